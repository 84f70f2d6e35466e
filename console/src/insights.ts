// Saved insights and dashboards (GET/POST/PUT/DELETE /v1/insights and /v1/dashboards): an insight is
// an analysis view's route (path + URL query), a dashboard an ordered list of insight ids.
import { deleteJson, getJson, postJson, putJson } from './api';

export interface Insight {
  id: number;
  name: string;
  path: string;
  query: string;
  created_at: string;
  updated_at: string;
}

export interface Dashboard {
  id: number;
  name: string;
  insight_ids: number[];
  created_at: string;
  updated_at: string;
  /** GET /v1/dashboards/{id} only: the insights in card order. */
  insights?: Insight[];
}

export const insightLink = (i: Pick<Insight, 'path' | 'query'>) => `#${i.path}${i.query ? `?${i.query}` : ''}`;

export const listInsights = (signal?: AbortSignal) => getJson<{ insights: Insight[] }>('/v1/insights', undefined, signal).then((d) => d.insights);
export const saveInsight = (body: { name: string; path: string; query: string }) => postJson<{ insight: Insight }>('/v1/insights', body).then((d) => d.insight);
export const deleteInsight = (id: number) => deleteJson<{ deleted: number }>(`/v1/insights/${id}`);

export const listDashboards = (signal?: AbortSignal) => getJson<{ dashboards: Dashboard[] }>('/v1/dashboards', undefined, signal).then((d) => d.dashboards);
export const getDashboard = (id: number, signal?: AbortSignal) => getJson<{ dashboard: Dashboard }>(`/v1/dashboards/${id}`, undefined, signal).then((d) => d.dashboard);
export const createDashboard = (name: string) => postJson<{ dashboard: Dashboard }>('/v1/dashboards', { name, insight_ids: [] }).then((d) => d.dashboard);
export const updateDashboard = (id: number, change: { name?: string; insight_ids?: number[] }) => putJson<{ dashboard: Dashboard }>(`/v1/dashboards/${id}`, change).then((d) => d.dashboard);
export const deleteDashboard = (id: number) => deleteJson<{ deleted: number }>(`/v1/dashboards/${id}`);
