// Numbers and dates as a person reads them (the browser's locale; dates of usage are UTC days).

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 })
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 })
const percent = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 })
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' })
const shortDateTime = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
const dayOnly = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' })

export const credits = (n: number): string => integer.format(n)
export const count = (n: number): string => integer.format(n)
export const ms = (n: number): string => `${decimal.format(n)} ms`
export const rate = (part: number, whole: number): string => (whole > 0 ? percent.format(part / whole) : '–')
export const when = (iso: string | null): string => (iso ? dateTime.format(new Date(iso)) : '–')
export const date = (iso: string): string => dateOnly.format(new Date(iso))
export const short = (iso: string): string => shortDateTime.format(new Date(iso))
/** A UTC day (YYYY-MM-DD) as "Nov 3". */
export const day = (isoDay: string): string => dayOnly.format(new Date(`${isoDay}T00:00:00Z`))
export const signed = (n: number): string => (n > 0 ? `+${integer.format(n)}` : integer.format(n))
