"""``[console] allowed_hosts`` and ``trusted_proxy`` (issue 22, finding 8): what the
file may say, and the hosts the console answers to when it says nothing."""

from __future__ import annotations

import pytest

from gateway import config, scaffold
from gateway.errors import ConfigError


@pytest.fixture
def cfg_path(tmp_path):
    return scaffold.init_project(tmp_path / "gw")


def with_console(path, lines: str) -> config.Config:
    text = path.read_text()
    path.write_text(text.replace('listen = "127.0.0.1:8080"', lines, 1))
    return config.load(path)


def problems(path, lines: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        with_console(path, lines)
    return [p.partition(": ")[2] if p.startswith("/") else p for p in exc.value.problems]


@pytest.mark.parametrize(("listen", "hosts"), [
    ("127.0.0.1:8080", ["127.0.0.1", "localhost", "[::1]"]),
    ("[::1]:8080", ["[::1]", "localhost", "127.0.0.1"]),
    ("10.1.2.3:8443", ["10.1.2.3", "localhost", "127.0.0.1", "[::1]"]),
    ("Console.Bank.Example:443", ["console.bank.example", "localhost", "127.0.0.1", "[::1]"]),
    ("0.0.0.0:8080", ["localhost", "127.0.0.1", "[::1]"]),  # every address: no name of its own
    ("[::]:8080", ["localhost", "127.0.0.1", "[::1]"]),
])
def test_default_hosts_follow_listen(cfg_path, listen, hosts):
    assert with_console(cfg_path, f'listen = "{listen}"').console.hosts == hosts


def test_allowed_hosts_replace_the_default_and_are_normalised(cfg_path):
    cfg = with_console(cfg_path, 'allowed_hosts = ["Console.Bank.Example", "::1", "*.ops.example"]')
    assert cfg.console.hosts == ["console.bank.example", "[::1]", "*.ops.example"]


def test_trusted_proxy_is_an_address_or_a_list(tmp_path):
    def trusted(lines: str) -> list[str]:
        path = scaffold.init_project(tmp_path / str(len(list(tmp_path.iterdir()))))
        return with_console(path, lines).console.trusted_proxy

    assert trusted('trusted_proxy = "127.0.0.1"') == ["127.0.0.1"]
    assert trusted('trusted_proxy = ["::1", "10.0.0.0/24"]') == ["::1", "10.0.0.0/24"]
    assert trusted('listen = "127.0.0.1:8080"') == []  # default: none


@pytest.mark.parametrize(("lines", "expected"), [
    ('allowed_hosts = ["*"]', 'console.allowed_hosts[0]: "*" would let any site'),
    ('allowed_hosts = ["https://console.example/"]', "console.allowed_hosts[0]: "),
    ('allowed_hosts = ["console.example:443"]', "(no scheme, port or path)"),
    ("allowed_hosts = []", "console.allowed_hosts: "),
    ('trusted_proxy = "proxy.bank.example"', 'console.trusted_proxy[0]: "proxy.bank.example" is not '
                                             "an IP address"),
    ('trusted_proxy = ["10.0.0.1/24"]', "console.trusted_proxy[0]: "),
])
def test_a_bad_value_names_its_key(cfg_path, lines, expected):
    (line,) = problems(cfg_path, lines)
    assert expected in line, line
