"""Golden fixtures of the SENAITE adapter: real senaite.jsonapi responses and the canonical JSON they become.

`get-analysis-request.json` and `get-analyses.json` are copied byte for byte from ozone-his/eip-openmrs-senaite
(senaite-openmrs/src/test/resources/senaite/response/, commit 288ad5d9802d203d328d7a0436a7ee5c65af688b),
MPL-2.0 (LICENSE.MPL-2.0.txt beside them). The names in them are OpenMRS demo patients, i.e. fictional.
`expected.json` (written for the hub) holds the canonical records each must produce with the example
configuration of the adapter's schema (no lab id, room or instruments; the unit of LAB-047 is configured).
"""
