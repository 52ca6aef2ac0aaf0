// Public surface of the local stack, used by the test suites and benchmarks.
export { startStack, freePorts, defaultPorts, demoUser, demoUserJwt, localFunctionSecrets, type StackEnv, type RunningStack } from './stack.ts'
export { startFunctions, type RunningFunction } from './functions.ts'
export { discoverFunctions } from './config.ts'
export { apiKey, signJwt, userJwt, verifyJwt, defaultJwtSecret } from './jwt.ts'
export { publicationName, subscriptionName, syncReplica, replicaKindFrom, standbySlotName, type ReplicaKind } from './replica.ts'
export { chromiumPath, ensureChromium, isRoot } from './system.ts'
export { createStripeStandin, stripeSignature, type StripeStandin } from './stripe-standin.ts'
export { startAuthStandin, type AuthStandin, type AuthStandinAccount } from './auth-standin.ts'
