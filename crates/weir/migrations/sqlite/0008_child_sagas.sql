-- weir's durable state, schema version 8: the parent of a child saga (a
-- saga started by a step of another, `SagaDefinitionBuilder::child`). The
-- child's end makes its parked parent due; the index finds a saga's
-- children.
ALTER TABLE weir_sagas ADD COLUMN parent_id TEXT;
CREATE INDEX weir_sagas_parent ON weir_sagas (parent_id) WHERE parent_id IS NOT NULL;
