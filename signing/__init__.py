"""Trust: the hub's PKI and keys, XAdES signing and verification, policy, timestamps and the transparency log."""
