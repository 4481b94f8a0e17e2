// Docker-style generated names: adjective_noun (a random suffix when taken).
const ADJECTIVES = ['brave', 'calm', 'eager', 'fond', 'gentle', 'happy', 'jolly', 'keen', 'lucid', 'merry', 'nifty', 'quiet', 'relaxed', 'sharp', 'tender', 'vivid', 'wise', 'zealous', 'bold', 'clever'];
const NOUNS = ['turing', 'hopper', 'lovelace', 'knuth', 'ritchie', 'thompson', 'torvalds', 'hamilton', 'liskov', 'dijkstra', 'shannon', 'noether', 'curie', 'babbage', 'cerf', 'kahn', 'lamport', 'perlman', 'wozniak', 'goldberg'];

export function generateName(taken: (n: string) => boolean, random: (n: number) => Buffer): string {
  for (let i = 0; ; i++) {
    const b = random(3);
    const base = `${ADJECTIVES[b[0]! % ADJECTIVES.length]}_${NOUNS[b[1]! % NOUNS.length]}`;
    const name = i < 5 ? base : `${base}${b[2]}`;
    if (!taken(name)) return name;
  }
}
