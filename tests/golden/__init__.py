"""Golden cases (one folder per sql/ output) and the reference semantics that produced them."""
