"""Synthetic but realistic case data for `gateway demo`, tests and benchmarks.

Every generated record passes the gateway's validation: resident IDs carry a
correct GB 11643 check character and a real birth date, card numbers pass
Luhn, amounts add up. Names and addresses are made up from common parts; they
are fictional.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Iterator, Sequence

from gateway.validation.fields import gb11643_check_char, luhn_ok

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英霞平刚桂兰华建国志红玉梅飞鹏辉凤宇浩凯晨欣怡子涵雨轩思博文"
PLACES = [
    ("110105", "北京市朝阳区", ["建国路", "朝阳北路", "望京街"]),
    ("310115", "上海市浦东新区", ["世纪大道", "张杨路", "陆家嘴环路"]),
    ("440305", "广东省深圳市南山区", ["科技园路", "深南大道", "后海大道"]),
    ("330106", "浙江省杭州市西湖区", ["文三路", "天目山路", "古墩路"]),
    ("510107", "四川省成都市武侯区", ["人民南路", "科华北路", "武侯祠大街"]),
    ("420106", "湖北省武汉市武昌区", ["中南路", "武珞路", "中北路"]),
    ("320102", "江苏省南京市玄武区", ["中山路", "珠江路", "北京东路"]),
    ("610113", "陕西省西安市雁塔区", ["小寨路", "长安南路", "科技路"]),
]
EMPLOYERS = ["华信科技有限公司", "东方物流集团", "明德教育咨询", "恒通建材贸易", "宏远餐饮管理"]
RELATIONS = ["配偶", "父亲", "母亲", "同事", "朋友", "兄弟", "姐妹"]
CASE_COLUMNS = [
    "case_id", "agency_code", "product", "account_number", "customer_name", "id_type", "id_number",
    "mobile", "home_address", "employer", "work_address", "contact1_name", "contact1_relation",
    "contact1_phone", "currency", "principal", "interest", "fees", "total_due", "overdue_days",
    "assigned_on", "due_back_on",
]


def resident_id(rnd: random.Random, region: str, today: dt.date) -> str:
    born = dt.date(1955, 1, 1) + dt.timedelta(days=rnd.randrange((today - dt.date(1955, 1, 1)).days
                                                                  - 18 * 366))
    body = f"{region}{born:%Y%m%d}{rnd.randrange(1000):03d}"
    return body + gb11643_check_char(body)


def card_number(rnd: random.Random, prefix: str = "622202") -> str:
    body = prefix + "".join(str(rnd.randrange(10)) for _ in range(9))
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


def mobile(rnd: random.Random) -> str:
    return f"1{rnd.choice('3456789')}{rnd.randrange(10**9):09d}"


def name(rnd: random.Random) -> str:
    return rnd.choice(SURNAMES) + "".join(rnd.choice(GIVEN) for _ in range(rnd.choice((1, 2))))


def cases(n: int, agencies: Sequence[str], *, seed: int = 2026, today: dt.date | None = None,
          prefix: str = "C") -> Iterator[dict[str, str]]:
    rnd = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    today = today or dt.date.today()
    for i in range(n):
        code, district, streets = rnd.choice(PLACES)
        principal = rnd.randrange(1000_00, 300000_00)
        interest = rnd.randrange(0, principal // 10)
        fees = rnd.randrange(0, 500_00)
        product = rnd.choice(["credit_card", "credit_card", "personal_loan", "auto_loan"])
        yield {
            "case_id": f"{prefix}{today:%Y%m}{i:07d}",
            "agency_code": agencies[i % len(agencies)],
            "product": product,
            "account_number": card_number(rnd) if product == "credit_card"
            else f"{rnd.randrange(10**15, 10**16)}",
            "customer_name": name(rnd),
            "id_type": "resident_id",
            "id_number": resident_id(rnd, code, today),
            "mobile": mobile(rnd),
            "home_address": f"{district}{rnd.choice(streets)}{rnd.randrange(1, 999)}号"
                            f"{rnd.randrange(1, 30)}栋{rnd.randrange(101, 2999)}室",
            "employer": rnd.choice(EMPLOYERS),
            "work_address": f"{district}{rnd.choice(streets)}{rnd.randrange(1, 999)}号",
            "contact1_name": name(rnd),
            "contact1_relation": rnd.choice(RELATIONS),
            "contact1_phone": mobile(rnd),
            "currency": "CNY",
            "principal": f"{principal / 100:.2f}",
            "interest": f"{interest / 100:.2f}",
            "fees": f"{fees / 100:.2f}",
            "total_due": f"{(principal + interest + fees) / 100:.2f}",
            "overdue_days": str(rnd.randrange(31, 720)),
            "assigned_on": today.isoformat(),
            "due_back_on": (today + dt.timedelta(days=90)).isoformat(),
        }


RESULT_COLUMNS = ["case_id", "action_at", "action_code", "contact_target", "outcome", "amount",
                  "promise_date", "new_mobile", "new_address", "note", "collector_id"]
OUTCOMES = ["承诺还款", "无人接听", "已留言", "客户拒绝", "号码空号", "已还部分款项"]


def results(case_ids: Sequence[str], n: int, *, seed: int = 7,
            today: dt.date | None = None) -> Iterator[dict[str, str]]:
    """An agency's result rows about *case_ids* (cycled): calls and messages in the day
    (a few out of hours, to be flagged), promises and payments with their amounts."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    today = today or dt.date.today()
    for i in range(n):
        day = today - dt.timedelta(days=1 + (i // len(case_ids)) % 28)
        at = dt.datetime.combine(day, dt.time(rnd.choice([7, 9, 10, 11, 14, 15, 16, 19, 22]),
                                              rnd.randrange(60)))
        action = rnd.choice(["CALL", "CALL", "CALL", "SMS", "SMS", "VISIT", "PROMISE_TO_PAY",
                             "PAYMENT_REPORTED", "LETTER"])
        row = {"case_id": case_ids[i % len(case_ids)], "action_at": at.isoformat(),
               "action_code": action, "contact_target": "debtor",
               "outcome": rnd.choice(OUTCOMES), "collector_id": f"col-{rnd.randrange(1, 200)}"}
        if action in ("PROMISE_TO_PAY", "PAYMENT_REPORTED"):
            row["amount"] = f"{rnd.randrange(100, 50000)}.{rnd.randrange(100):02d}"
        if action == "PROMISE_TO_PAY":
            row["promise_date"] = (today + dt.timedelta(days=rnd.randrange(1, 30))).isoformat()
        yield row


def to_csv(records: Sequence[dict[str, str]] | Iterator[dict[str, str]],
           columns: Sequence[str] = CASE_COLUMNS, headers: dict[str, str] | None = None,
           encoding: str = "utf-8") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([(headers or {}).get(c, c) for c in columns])
    for r in records:
        w.writerow([r.get(c, "") for c in columns])
    return buf.getvalue().encode(encoding)
