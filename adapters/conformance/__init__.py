"""The conformance kit: the L1–L4 checks of `levels.md`, runnable by third parties as a pytest plugin."""
