"""Security: keys, the signed-then-encrypted envelope, replay memory, entitlements, audit."""
