/**
 * Turning what a user typed into an FTS5 query that cannot fail to parse.
 *
 * Every whitespace-separated word becomes a quoted phrase (quotes inside doubled), so FTS operators and
 * punctuation (`AND`, `"`, `*`, `:`, `-`, `(`) are matched as text, never interpreted. A trailing `*` on a word
 * is kept as a prefix search, the one piece of syntax users expect. Words are ANDed. Control characters (NUL
 * included, which would end the query string inside SQLite) separate words, as the tokenizer treats them.
 */

/** The FTS5 MATCH expression for a user query, or undefined when it has no searchable word. */
export const toFts = (query: string): string | undefined => {
  const terms: Array<string> = []
  for (const word of query.split(/[\s\p{Cc}]+/u)) {
    const prefix = word.length > 1 && word.endsWith("*")
    const text = (prefix ? word.slice(0, -1) : word).replace(/\*+$/, "")
    // A word with nothing the tokenizer indexes (only punctuation) would match nothing; drop it.
    if (!/[\p{L}\p{N}]/u.test(text)) continue
    terms.push(`"${text.replaceAll('"', '""')}"${prefix ? "*" : ""}`)
  }
  return terms.length === 0 ? undefined : terms.join(" ")
}
