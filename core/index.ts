// The Pixelfly math, shared by the language server, the daemon and the webviews.
// Pure TypeScript: no Node or VS Code imports anywhere under core/.
export * from './errors';
export * from './butterfly';
export * from './layout';
export * from './blockIndex';
export * from './pixelflyLayer';
export * from './costModel';
export * from './inventory';
export * from './planner';
export * from './modelSpec';
export * from './attention';
export * from './stats';
