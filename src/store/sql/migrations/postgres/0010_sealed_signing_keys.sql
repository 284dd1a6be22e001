-- Signing keys sealed at rest (store::KeyEncryption, e.g. AES-256-GCM under
-- a key-encryption key the host supplies): `key_protection` says how
-- `private_key` is stored. 'sealed': the KeyEncryption's output, bound to
-- (project, kid, alg). 'plaintext': the DER form, as every key stored before
-- this migration was; such rows are read only with
-- SqlOptions::danger_plaintext_keys, or sealed in place by
-- reseal_signing_keys().
ALTER TABLE signing_keys ADD COLUMN key_protection TEXT NOT NULL DEFAULT 'plaintext'
    CHECK (key_protection IN ('plaintext', 'sealed'));
