// Reference ECMAScript Number-to-string results for random doubles, for the
// canonical JSON tests (RFC 8785 writes numbers this way).
let seed = 0x2545F4914F6CDD1Dn;
const out = [];
function next(){ seed ^= seed << 13n; seed &= 0xFFFFFFFFFFFFFFFFn; seed ^= seed >> 7n; seed ^= seed << 17n; seed &= 0xFFFFFFFFFFFFFFFFn; return seed; }
while (out.length < 3000) {
  let b = next();
  if (out.length % 3 === 1) b = (b & 0x800FFFFFFFFFFFFFn) | (BigInt(1023 + Number(next() % 120n) - 60) << 52n); // near 1
  if (out.length % 3 === 2) b = BigInt.asUintN(64, BigInt(Math.floor(Number(next() % 10000000000n))) ) ; // small ints/subnormals
  const f = new Float64Array(new BigUint64Array([b]).buffer)[0];
  if (!isFinite(f)) continue;
  out.push(b.toString(16).padStart(16, "0") + " " + String(f));
}
console.log(out.join("\n"));
