"""The agency kit, ``gateway-agency``: what a collection agency's staff run on their side.

It fetches what the gateway placed in the agency's inbox (slices, manifests, receipts),
checks every slice against its signed manifest and acknowledges what arrived whole; it
checks a results file with the gateway's own rules before sealing it for the gateway;
it asks, signed by a member's role key, to see named cases' fields in full, and destroys
the one-off release it gets at its expiry (:mod:`.unmask`); and when the contract has
ended it destroys every copy and signs an attestation saying so. It knows nothing of the
bank's configuration: only ``agency.toml`` (:mod:`.config`), the agency's keys and the
gateway's public key.

Plaintext is written in one place only, the optional ``store`` directory (and a file the
user names with ``open --out``/``export``); everything else the kit keeps is ciphertext,
names, hashes, case ids and times.
"""
