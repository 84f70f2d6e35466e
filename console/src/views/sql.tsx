// SQL: run a read-only query (POST /v1/sql; the engine refuses writes). Other views open their
// query here with its parameters ("View SQL" → link).
import { useEffect, useState } from 'preact/hooks';
import { postJson } from '../api';
import { NotBuiltNotice } from '../components/notbuilt';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { DataTable, type Row } from '../components/table';
import { useRequest } from '../components/useRequest';
import { num } from '../format';
import type { Route } from '../router';
import { readStashedQuery } from '../stash';

interface SqlAnswer {
  meta: { name: string; type: string }[];
  data: Row[];
  rows: number;
  statistics?: { elapsed: number; rows_read: number; bytes_read: number };
}

const SHOW_ROWS = 500;
const EXAMPLE = 'SELECT event, count() AS events, uniqExact(person_id) AS people\nFROM behavior_events\nGROUP BY event\nORDER BY events DESC';

export function SqlView({ route }: { route: Route }) {
  const stashed = readStashedQuery(route.query.get('q') || '');
  const [sql, setSql] = useState(stashed?.sql || EXAMPLE);
  const [params, setParams] = useState(stashed ? JSON.stringify(stashed.params, null, 2) : '{}');
  const [paramsError, setParamsError] = useState<Error | null>(null);
  const req = useRequest<SqlAnswer>();

  // A query opened from another view is shown and run at once: that is why the link was followed.
  useEffect(() => {
    if (!stashed) return;
    const text = JSON.stringify(stashed.params, null, 2);
    setSql(stashed.sql);
    setParams(text);
    run(stashed.sql, text);
  }, [route.query.get('q')]);

  function run(sqlText = sql, paramsText = params) {
    let parsed: Record<string, unknown>;
    try {
      parsed = paramsText.trim() ? JSON.parse(paramsText) : {};
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('parameters must be a JSON object');
      setParamsError(null);
    } catch (err) {
      setParamsError(err as Error);
      return;
    }
    // Parameters travel as text, as clickhouse-client's SET param_x = '…' would send them.
    const asText = Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
    req.run((signal) => postJson<SqlAnswer>('/v1/sql', { sql: sqlText, params: asText, format: 'json' }, signal));
  }

  const answer = req.data;
  return (
    <section aria-label="SQL">
      <p class="lede">
        Read-only SQL on the warehouse ({stashed ? <>opened from <strong>{stashed.title}</strong></> : 'the eight tables, events_raw, events_invalid'}). Parameters are written <code>{'{name:Type}'}</code> in the query. <kbd>Ctrl</kbd>+<kbd>Enter</kbd> runs it.
      </p>
      <form
        class="sql-form"
        aria-label="Query"
        onSubmit={(e) => {
          e.preventDefault();
          run();
        }}
      >
        <label class="field grow">
          <span class="field-label">SQL</span>
          <textarea
            class="code"
            rows={12}
            spellcheck={false}
            value={sql}
            onInput={(e) => setSql((e.target as HTMLTextAreaElement).value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
                e.preventDefault();
                run();
              }
            }}
          />
        </label>
        <label class="field params-field">
          <span class="field-label">Parameters (JSON)</span>
          <textarea class="code" rows={12} spellcheck={false} value={params} onInput={(e) => setParams((e.target as HTMLTextAreaElement).value)} />
        </label>
        <div>
          <button type="submit" class="primary" disabled={req.loading || !sql.trim()}>
            {req.loading ? 'Running…' : 'Run query'}
          </button>
        </div>
      </form>
      <ErrorNotice error={paramsError} what="Reading the parameters" />
      <ErrorNotice error={req.error} what="The query" />
      {missingModelTable(req.error) && <NotBuiltNotice />}
      {req.loading && <Loading>Running…</Loading>}
      {answer && (
        <div class="answer">
          <p class="status-line" role="status">
            {num(answer.rows)} rows{answer.statistics ? ` in ${answer.statistics.elapsed.toFixed(3)} s, ${num(answer.statistics.rows_read)} rows read` : ''}
            {answer.rows > SHOW_ROWS ? ` (showing the first ${SHOW_ROWS})` : ''}
          </p>
          {answer.data.length === 0 ? (
            <Empty>The query returned no rows.</Empty>
          ) : (
            <DataTable
              caption="Query result"
              hideCaption
              columns={answer.meta.map((m) => ({ key: m.name, label: m.name, numeric: /Int|Float|Decimal/.test(m.type), sortable: true, render: (r: Row) => cell(r[m.name]) }))}
              rows={answer.data.slice(0, SHOW_ROWS)}
            />
          )}
        </div>
      )}
    </section>
  );
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

// The tables the model refresh builds (funnelhouse/sql/models): a query on one of them before the
// first refresh fails with the engine's "Unknown table"; say what to do beside it.
const MODEL_TABLES = ['behavior_events', 'campaign_performance', 'campaign_touches', 'funnel_stages', 'identity_map', 'order_items', 'orders', 'product_engagement', 'sessions', 'users'];

function missingModelTable(error: unknown): boolean {
  const text = error instanceof Error ? error.message : '';
  const table = (text.match(/Unknown table[^'`]*['`](?:\w+\.)?(\w+)['`]/) || [])[1];
  return !!table && MODEL_TABLES.includes(table);
}
