"""Adapters bring data in from LIMS, IoT feeds and provincial platforms, each at a measured level L1–L5.

It owns the adapter framework (plug-ins found through the `qihub.adapters` entry-point group), the landing
zone (raw messages with their provenance envelopes, checkpoints, retries, quarantine), canonical records and
their fusion into the knowledge graph, the outbox of CloudEvents with webhook/MQTT delivery, write-back
commands, cross-domain rules, the maturity assessment and the conformance kit third parties run.
"""
