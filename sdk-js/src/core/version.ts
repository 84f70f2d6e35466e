// Library name and version as sent in context.library (the build defines __FH_VERSION__ from package.json).

declare const __FH_VERSION__: string;

export const LIBRARY_NAME = 'funnelhouse-js';
export const LIBRARY_VERSION: string = typeof __FH_VERSION__ === 'string' ? __FH_VERSION__ : '0.0.0-dev';
