-- Synapse (https://github.com/element-hq/synapse) at commit a58ad44eb0, AGPL-3.0-only:
-- synapse/storage/schema/main/full_schemas/72/full.sql.sqlite, an excerpt (one line,
-- as published).
CREATE TABLE appservice_stream_position( Lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE, stream_ordering BIGINT, CHECK (Lock='X') );
