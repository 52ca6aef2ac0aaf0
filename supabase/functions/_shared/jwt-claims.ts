// Claims of the caller's JWT. Functions with verify_jwt = true get requests whose JWT the
// platform (Supabase's gateway, or the local stack's) has already verified, so decoding is
// enough here; functions with verify_jwt = false must not use this.
import { HttpError } from './http.ts'

export interface Claims {
  sub?: string
  role?: string
}

export function claimsOf(req: Request): Claims {
  const token = (req.headers.get('authorization') ?? '').replace(/^Bearer\s+/i, '')
  const payload = token.split('.')[1]
  if (!payload) throw new HttpError(401, 'unauthorized', 'a JWT is required')
  try {
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload.replaceAll('-', '+').replaceAll('_', '/')), (c) => c.charCodeAt(0))))
  } catch {
    throw new HttpError(401, 'unauthorized', 'the JWT cannot be read')
  }
}

/** The signed-in user's id, or 401. */
export function requireUser(req: Request): string {
  const { sub, role } = claimsOf(req)
  if (role !== 'authenticated' || !sub) throw new HttpError(401, 'unauthorized', 'sign in first: this endpoint needs a user JWT')
  return sub
}

/** Only trusted servers (the service_role key) may call this endpoint. */
export function requireServiceRole(req: Request): void {
  if (claimsOf(req).role !== 'service_role') throw new HttpError(403, 'forbidden', 'this endpoint is for the service role only')
}
