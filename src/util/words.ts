// English for the lines people read: "1 block", "2 blocks", "an overlay".

/** `n` and `noun`, plural unless `n` is 1 ("1 block", "0 blocks", "12 uploads"). */
export function counted(n: number | string, noun: string, plural = `${noun}s`): string {
  return `${n} ${Number(n) === 1 ? noun : plural}`;
}

/** `word` after "a" or "an" as it is spoken ("a read-only", "an overlay"). */
export function withArticle(word: string): string {
  return `${/^[aeiou]/i.test(word) ? 'an' : 'a'} ${word}`;
}
