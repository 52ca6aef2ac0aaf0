import { createTollgateServer, UserError } from '@tollgate/client/server'
import { createNodeSupabaseClient } from './node-client.ts'

// withCredits: reserve, run the work, then capture (success or the user's fault) or release
// (our fault: nothing charged). The work's own error is rethrown after settling.
export async function withCreditsExample(url: string, serviceRoleKey: string, orgId: string, userId: string, operation: string) {
  const server = createTollgateServer(createNodeSupabaseClient(url, serviceRoleKey))
  const summarise = async (text: string): Promise<string> => {
    if (text === '') throw new UserError('nothing to summarise', { code: 'empty_input' }) // user's fault: charged
    if (text === 'crash') throw new Error('model backend unavailable') // our fault: released
    return text.slice(0, 20)
  }
  const metered = (text: string) =>
    server.withCredits({ orgId, userId, operation, backendEndpoint: 'summarise' }, () => summarise(text))

  const ok = await metered('A long article about usage credits')
  console.log(`summary "${ok.result}" cost ${ok.charge.charged} credits`)

  const outcomes: string[] = []
  for (const text of ['', 'crash']) {
    try {
      await metered(text)
    } catch (error) {
      outcomes.push(error instanceof UserError ? `charged: ${error.code}` : `not charged: ${(error as Error).message}`)
    }
  }
  return { ok, outcomes }
}
