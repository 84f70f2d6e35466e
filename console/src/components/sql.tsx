// "View SQL": the queries an answer ran, their parameters, and a link that opens each in the SQL view.
import { useMemo } from 'preact/hooks';
import { href } from '../router';
import { stashQuery } from '../stash';

export interface RanQuery {
  sql: string;
  params?: Record<string, unknown>;
}

/** One query (sql + params) or the list some answers carry (coverage runs several). */
export function SqlDetails({ sql, params, title }: { sql: string | RanQuery[]; params?: Record<string, unknown>; title: string }) {
  const queries: RanQuery[] = typeof sql === 'string' ? [{ sql, params }] : sql;
  return (
    <details class="sql-details">
      <summary>View SQL{queries.length > 1 ? ` (${queries.length} queries)` : ''}</summary>
      {queries.map((q, i) => (
        <OneQuery query={q} title={queries.length > 1 ? `${title}, query ${i + 1}` : title} />
      ))}
    </details>
  );
}

function OneQuery({ query, title }: { query: RanQuery; title: string }) {
  const key = useMemo(() => stashQuery({ sql: query.sql, params: query.params || {}, title }), [query, title]);
  const params = query.params || {};
  return (
    <div class="one-query">
      <p>
        <a href={href('/sql', { q: key })}>Open {title} in the SQL view</a>
      </p>
      {Object.keys(params).length > 0 && (
        <dl class="params" aria-label="Parameters">
          {Object.entries(params).map(([k, v]) => (
            <div>
              <dt>{k}</dt>
              <dd>{typeof v === 'string' ? v : JSON.stringify(v)}</dd>
            </div>
          ))}
        </dl>
      )}
      <pre class="sql" tabIndex={0} aria-label={`SQL of ${title}`}>
        <code>{query.sql}</code>
      </pre>
    </div>
  );
}
