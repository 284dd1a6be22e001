-- The rotation a refresh token went through (JSON of grant::RotationMark:
-- when, the derivation nonce, the successor's hash, the issuance digest),
-- set by the same conditional UPDATE that marks it rotated; read for the
-- reuse grace. `rotated_at` lets purge() clear marks once the grace can no
-- longer apply, so a later database snapshot plus an old refresh token
-- cannot derive the tokens that followed it.
ALTER TABLE refresh_tokens ADD COLUMN rotation TEXT;
ALTER TABLE refresh_tokens ADD COLUMN rotated_at BIGINT;
CREATE INDEX refresh_tokens_rotation ON refresh_tokens (rotated_at);
