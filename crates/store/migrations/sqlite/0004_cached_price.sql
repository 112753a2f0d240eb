-- llm-link storage, schema 4 (SQLite): the catalog's price of cached prompt
-- tokens (per million tokens, like `input_price`). NULL: cached tokens are
-- billed at `input_price`.

ALTER TABLE llm_models ADD COLUMN cached_input_price REAL;
