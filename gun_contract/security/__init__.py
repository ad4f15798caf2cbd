"""Keys, the signed-then-encrypted envelope, replay memory, entitlements, state cipher.
May import: gun_contract."""
