// Set once the run is being torn down (Ctrl-C, SIGTERM): nothing new may start after that, so
// no process or connection outlives the teardown.
export const lifecycle = { closing: false }

export function assertRunning(): void {
  if (lifecycle.closing) throw new Error('the run is being torn down')
}
