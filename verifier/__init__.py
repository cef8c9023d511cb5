"""verifier: signed anti-counterfeit and traceability codes for product labels."""

__version__ = "0.1.0"
