-- The rotation a refresh token went through (JSON of grant::RotationMark:
-- when, the derivation nonce, the successor's hash), set by the same
-- conditional UPDATE that marks it rotated; read for the reuse grace.
ALTER TABLE refresh_tokens ADD COLUMN rotation TEXT;
