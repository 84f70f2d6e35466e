// The analysis views: the ones whose whole state is in the URL, so the shell can save them as
// insights and a dashboard card can mount them from a saved route.
import type { ComponentType } from 'preact';
import type { Route } from './router';
import { CampaignsView } from './views/campaigns';
import { CorrelationView } from './views/correlation';
import { FlowsView } from './views/flows';
import { FunnelsView } from './views/funnels';
import { PageReportView } from './views/pagereport';
import { PathsView } from './views/paths';
import { RetentionView } from './views/retention';
import { StickinessView } from './views/stickiness';
import { TrendsView } from './views/trends';

export interface AnalysisView {
  path: string;
  title: string;
  view: ComponentType<{ route: Route }>;
}

// The server accepts the same paths for a saved insight (funnelhouse/insights/store.py).
export const ANALYSIS_VIEWS: AnalysisView[] = [
  { path: '/trends', title: 'Trends', view: TrendsView },
  { path: '/funnels', title: 'Funnels', view: FunnelsView },
  { path: '/retention', title: 'Retention', view: RetentionView },
  { path: '/stickiness', title: 'Stickiness', view: StickinessView },
  { path: '/paths', title: 'Paths', view: PathsView },
  { path: '/flows', title: 'User flows', view: FlowsView as ComponentType<{ route: Route }> },
  { path: '/pages', title: 'Page report', view: PageReportView },
  { path: '/correlation', title: 'Correlation', view: CorrelationView },
  { path: '/campaigns', title: 'Campaigns', view: CampaignsView },
];

export const analysisView = (path: string): AnalysisView | undefined => ANALYSIS_VIEWS.find((v) => v.path === path);
