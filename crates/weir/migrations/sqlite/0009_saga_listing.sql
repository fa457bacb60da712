-- weir's durable state, schema version 9: indexes for listing sagas a page
-- at a time (`Store::find_sagas`, `weir sagas list`, `weir ui`), in the
-- order they were started, all of them or one definition's. Without them
-- every page sorted the whole table: 30-45 ms a page at 100,000 sagas
-- (`cargo bench -p weir --features postgres --bench inspect`). Both are
-- written once per saga (its start time and definition never change).
CREATE INDEX weir_sagas_started ON weir_sagas (created_at, id);
CREATE INDEX weir_sagas_definition_started ON weir_sagas (definition, created_at, id);
