// funnelhouse-js: the ES module entry (browser layer, page-wide functions, and the core).

export * from './api';
export { BrowserAnalytics, createBrowserAnalytics, browserTransport, type BrowserOptions, type AutocaptureOptions } from './browser/index';
export { BrowserStorage, type CookieOptions } from './browser/storage';
export { campaignFromUrl } from './browser/context';
export * from './core/index';
