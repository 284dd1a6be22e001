-- `refresh_tokens.rotated_at` has been NULL in every row since migration 7
-- moved rotated tokens to `refresh_tombstones`, and no statement reads it;
-- its index only cost every exchange and refresh one more index insert.
DROP INDEX IF EXISTS refresh_tokens_rotation;
