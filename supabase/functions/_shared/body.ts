// Bodies are read with a cap, everywhere: a hostile caller can send gigabytes, and a function
// must refuse them before holding them in memory (or checking a signature over them).

/**
 * Reads at most `limit` bytes of a body; undefined (the rest cancelled, nothing more read) when
 * it is longer — or when a declared Content-Length already says so.
 */
export async function readCapped(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
  declaredLength?: string | null,
): Promise<Uint8Array<ArrayBuffer> | undefined> {
  if (declaredLength && Number(declaredLength) > limit) {
    await body?.cancel().catch(() => {})
    return undefined
  }
  const chunks: Uint8Array[] = []
  let size = 0
  if (body) {
    const reader = body.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.byteLength
      if (size > limit) {
        await reader.cancel().catch(() => {})
        return undefined
      }
      chunks.push(value)
    }
  }
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return bytes
}
