"""The hub's built-in adapters (SENAITE LIMS, generic LIMS push, MQTT, OPC UA, provincial platform)."""
