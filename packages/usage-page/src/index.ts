// Node side of the usage page: building the bundle and serving it (the page itself is app/).
export { buildUsagePage, bundleSizes, pageRoot, watchUsagePage, type BundleFile } from './build.ts'
export { contentSecurityPolicy, usagePageHandler, type PageConfig } from './serve.ts'
