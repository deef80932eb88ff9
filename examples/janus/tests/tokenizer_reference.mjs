// examples/janus/tests/tokenizer_reference.mjs - the Hugging Face reference for janus::Tokenizer
// (issue 13). Run by CTest ("tokenizer: reference train and encode") after the npm package
// `tokenizers` (Hugging Face's Rust library with its Node binding) was installed into the build
// tree:
//   node tokenizer_reference.mjs --modules BUILD/npm-tokenizers/node_modules \
//        --corpus tests/data/tokenizer-corpus.txt --out BUILD/tokenizer-reference
//
// 1. The corpus (one text per line, escapes \n \t \\ as in janus_tokenize's TEXTS.txt; some lines
//    hold bytes that are not UTF-8) is expanded deterministically (seeded generator below) into
//    >= 10,000 byte strings: the lines, concatenations of 2-4 lines with whitespace between,
//    byte slices (which cut UTF-8 characters, so more invalid UTF-8), special-token strings
//    spliced in at random byte positions, whitespace runs.
// 2. For each pre-tokenizer configuration (DeepSeek-LLM / Janus-Pro's; Llama 3's regex split; GPT-2's
//    ByteLevel regex with a prefix space) the package TRAINS a byte-level BPE model
//    (Tokenizer.train, the BpeTrainer of the model) on the expanded strings; the trained vocab and
//    merges are then re-numbered with the 256 byte-level characters first and cut to the first
//    MERGES merges (so that every byte has a token, and words are not all whole tokens), and the
//    Janus special tokens, a TemplateProcessing post-processor with BOS and the ByteLevel decoder
//    are set. The result is loaded by the package (Tokenizer.fromString) and saved by it
//    (Tokenizer.save, merges as pairs) as NAME.json, or for DeepSeek written as it is (merges as
//    "a b" strings, the older form); NAME.json is read back with Tokenizer.fromFile for encoding.
// 3. Every string is encoded by the package (encode, with and without special tokens) and its ids
//    decoded (with and without skip_special_tokens); random id sequences are decoded too. Files:
//      strings.hex                one string per line, hex of its bytes
//      NAME.json                  the tokenizer
//      NAME.ids / NAME.ids-plain  ids with / without the post-processor's special tokens
//      NAME.decoded.hex / NAME.decoded-skip.hex   decode(ids) / decode(ids, skip special), hex
//      NAME.random-ids / NAME.random-decoded.hex  random id sequences and their decode
//      meta.json                  package version, counts, vocabulary sizes, checks below
//
// Invalid UTF-8: the package takes JavaScript strings. Node turns bytes into a string with the
// WHATWG UTF-8 decoder (Buffer.toString("utf8")): each maximal ill-formed subsequence becomes
// U+FFFD; N-API then gives Rust UTF-8 in which any lone surrogate is U+FFFD too (checked below:
// encode("a\uD800b") == encode("a\uFFFDb")). So the reference for a byte string is the package's
// encoding of its WHATWG decoding, which is what janus::Tokenizer must produce from the raw bytes.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing argument ${name}`);
  return process.argv[i + 1];
}
const modules = arg('--modules');
const corpusPath = arg('--corpus');
const outDir = arg('--out');
const require = createRequire(path.join(path.resolve(modules), 'noop.js'));
const tk = require('tokenizers');
const pkg = JSON.parse(fs.readFileSync(path.join(modules, 'tokenizers', 'package.json'), 'utf8'));

const N_STRINGS = 12000;
const MERGES = 3000;
const SEED = 20241205;

// ---- deterministic generator (mulberry32) -------------------------------------------------
let state = SEED >>> 0;
function rand() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randint = (n) => Math.floor(rand() * n);
const pick = (a) => a[randint(a.length)];

// ---- corpus --------------------------------------------------------------------------------
function unescapeLine(buf, lineNo) {
  const out = [];
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== 0x5c) { out.push(buf[i]); continue; }
    const e = buf[++i];
    if (e === 0x6e) out.push(0x0a);
    else if (e === 0x74) out.push(0x09);
    else if (e === 0x5c) out.push(0x5c);
    else throw new Error(`${corpusPath}: line ${lineNo}: unknown escape`);
  }
  return Buffer.from(out);
}
const raw = fs.readFileSync(corpusPath);
const lines = [];
{
  let start = 0, no = 0;
  while (start < raw.length) {
    let nl = raw.indexOf(0x0a, start);
    if (nl < 0) nl = raw.length;
    lines.push(unescapeLine(raw.subarray(start, nl), ++no));
    start = nl + 1;
  }
}

const SPECIALS = ['<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>', '<｜▁pad▁｜>', '<begin_of_image>',
  '<end_of_image>', '<|User|>', '<|Assistant|>', '<image_placeholder>'];
const SEPS = [' ', '  ', '\n', '\n\n', '\t', ' \t ', '', '\r\n', '   \n  ', '\u3000', '.', ', '];
const strings = [...lines];
while (strings.length < N_STRINGS) {
  const kind = randint(6);
  if (kind === 0 || kind === 1) {  // concatenation of 2-4 lines
    const parts = [];
    const k = 2 + randint(3);
    for (let j = 0; j < k; j++) {
      if (j) parts.push(Buffer.from(pick(SEPS)));
      parts.push(pick(lines));
    }
    strings.push(Buffer.concat(parts));
  } else if (kind === 2) {  // byte slice of a line or of two lines
    const s = Buffer.concat([pick(lines), Buffer.from(pick(SEPS)), pick(lines)]);
    const a = randint(s.length + 1), b = a + randint(s.length - a + 1);
    strings.push(s.subarray(a, b));
  } else if (kind === 3) {  // special tokens spliced in at byte positions
    let s = pick(lines);
    const k = 1 + randint(3);
    for (let j = 0; j < k; j++) {
      const at = randint(s.length + 1);
      const tag = rand() < 0.8 ? pick(SPECIALS) : pick(['<tag>', '<sep>', '!!', 'cat', ' dog']);  // llama3's odd added tokens
      const sp = Buffer.from((rand() < 0.3 ? pick(SEPS) : '') + tag + (rand() < 0.3 ? pick(SEPS) : ''));
      s = Buffer.concat([s.subarray(0, at), sp, s.subarray(at)]);
    }
    strings.push(s);
  } else if (kind === 4) {  // whitespace runs around words
    const ws = () => { let w = ''; const k = randint(6); for (let j = 0; j < k; j++) w += pick([' ', '\t', '\n', '\r', '\u00a0', '\u3000']); return w; };
    const words = pick(lines).toString('latin1').split(' ');
    strings.push(Buffer.concat(words.map((w) => Buffer.concat([Buffer.from(ws()), Buffer.from(w, 'latin1')]))));
  } else {  // a prompt in the Janus training template
    const p = pick(lines);
    strings.push(Buffer.concat([Buffer.from('User: '), p, Buffer.from('\n\nAssistant:')]));
  }
}
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'strings.hex'), strings.map((s) => s.toString('hex')).join('\n') + '\n');
const texts = strings.map((s) => s.toString('utf8'));  // the WHATWG decoding (see above)
const trainFile = path.join(outDir, 'train.txt');
fs.writeFileSync(trainFile, texts.join('\n') + '\n');

// ---- pre-tokenizer configurations -----------------------------------------------------------
// DeepSeek-LLM / Janus-Pro (see tokenizer.hpp for the sources). The letter class is written with
// code points so that no editor or normalization can change it.
const cp = (a, b) => String.fromCodePoint(a) + (b === undefined ? '' : '-' + String.fromCodePoint(b));
const DS_LETTERS = [
  cp(0x41, 0x5a), cp(0x61, 0x7a), cp(0xb5), cp(0xc0, 0xd6), cp(0xd8, 0xf6), cp(0xf8, 0x1ba), cp(0x1bc, 0x1bf),
  cp(0x1c4, 0x293), cp(0x295, 0x2af), cp(0x370, 0x373), cp(0x376), cp(0x377), cp(0x37b, 0x37d), cp(0x37f), cp(0x386),
  cp(0x388, 0x38a), cp(0x38c), cp(0x38e, 0x3a1), cp(0x3a3, 0x3f5), cp(0x3f7, 0x481), cp(0x48a, 0x52f), cp(0x531, 0x556),
  cp(0x10a0, 0x10c5), cp(0x13a0, 0x13f5), cp(0x13f8, 0x13fd), cp(0x1c90, 0x1cba), cp(0x1cbd, 0x1cbf), cp(0x1d00, 0x1d2b),
  cp(0x1d6b, 0x1d77), cp(0x1d79, 0x1d9a), cp(0x1e00, 0x1f15), cp(0x1f18, 0x1f1d), cp(0x1f20, 0x1f45), cp(0x1f48, 0x1f4d),
  cp(0x1f50, 0x1f57), cp(0x1f59), cp(0x1f5b), cp(0x1f5d), cp(0x1f5f, 0x1f7d), cp(0x1f80, 0x1fb4), cp(0x1fb6, 0x1fbc),
  cp(0x1fbe), cp(0x1fc2, 0x1fc4), cp(0x1fc6, 0x1fcc), cp(0x1fd0, 0x1fd3), cp(0x1fd6, 0x1fdb), cp(0x1fe0, 0x1fec),
  cp(0x1ff2, 0x1ff4), cp(0x1ff6, 0x1ffc), cp(0x2102), cp(0x2107), cp(0x210a, 0x2113), cp(0x2115), cp(0x2119, 0x211d),
  cp(0x2124), cp(0x2126), cp(0x2128), cp(0x212a, 0x212d), cp(0x212f, 0x2134), cp(0x2139), cp(0x213c, 0x213f),
  cp(0x2145, 0x2149), cp(0x214e), cp(0x2183), cp(0x2184), cp(0x2c00, 0x2c7b), cp(0x2c7e, 0x2ce4), cp(0x2ceb, 0x2cee),
  cp(0x2cf2), cp(0x2cf3), cp(0xa640, 0xa66d), cp(0xa680, 0xa69b), cp(0xa722, 0xa76f), cp(0xa771, 0xa787),
  cp(0xa78b, 0xa78e), cp(0xab70, 0xabbf), cp(0xfb00, 0xfb06), cp(0xfb13, 0xfb17), cp(0xff21, 0xff3a), cp(0xff41, 0xff5a),
  cp(0x10400, 0x1044f), cp(0x104b0, 0x104d3), cp(0x104d8, 0x104fb), cp(0x10c80, 0x10cb2), cp(0x10cc0, 0x10cf2),
  cp(0x118a0, 0x118df), cp(0x1e900, 0x1e943)].join('');
const DS_PUNCT = '!-/:-~' + cp(0xff01, 0xff0f) + cp(0xff1a, 0xff5e) + cp(0x2018, 0x201f) + cp(0x3000, 0x3002);
const DS_CJK = cp(0x4e00, 0x9fa5) + cp(0x800, 0x4e00) + cp(0xac00, 0xd7ff);
const split = (re) => ({ type: 'Split', pattern: { Regex: re }, behavior: 'Isolated', invert: false });
const CONFIGS = {
  deepseek: {
    pre: { type: 'Sequence', pretokenizers: [
      split('[\r\n]'), split('\\s?[' + DS_LETTERS + ']+'), split('\\s?[' + DS_PUNCT + ']+'), split('\\s+$'),
      split('[' + DS_CJK + ']+'), { type: 'Digits', individual_digits: true },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    merges_as_strings: true, ignore_merges: false, bos: true, post_sequence: false, odd_added: false,
  },
  llama3: {
    pre: { type: 'Sequence', pretokenizers: [
      split("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    merges_as_strings: false, ignore_merges: true, bos: true, post_sequence: true, odd_added: true,
  },
  gpt2: {
    pre: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    merges_as_strings: false, ignore_merges: false, bos: false, post_sequence: false, odd_added: false,
  },
};

const emptyTokenizer = (pre) => ({
  version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, pre_tokenizer: pre,
  post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: {}, merges: [] },
});

const meta = { package: pkg.name, version: pkg.version, seed: SEED, strings: strings.length, tokenizers: {} };
for (const [name, cfg] of Object.entries(CONFIGS)) {
  // 2. train
  const trainer = tk.Tokenizer.fromString(JSON.stringify(emptyTokenizer(cfg.pre)));
  trainer.train([trainFile]);
  const trainedPath = path.join(outDir, `${name}.trained.json`);
  trainer.save(trainedPath, true);
  const trained = JSON.parse(fs.readFileSync(trainedPath, 'utf8'));
  const vocab = {};
  let next = 0;
  const alphabet = tk.byteLevelAlphabet();
  // byte order: the character of byte 0, 1, ..., 255
  const byteChars = [];
  {
    const direct = (b) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    let n = 0;
    for (let b = 0; b < 256; b++) byteChars.push(String.fromCodePoint(direct(b) ? b : 256 + n++));
    if (alphabet.length !== 256 || !byteChars.every((c) => alphabet.includes(c)))
      throw new Error('byteLevelAlphabet() differs from GPT-2 bytes_to_unicode');
  }
  for (const c of byteChars) vocab[c] = next++;
  const merges = [];
  for (const m of trained.model.merges.slice(0, MERGES)) {
    const [a, b] = Array.isArray(m) ? m : m.split(' ');
    if (!(a in vocab) || !(b in vocab)) throw new Error(`merge ${a} ${b} out of order`);
    merges.push(cfg.merges_as_strings ? `${a} ${b}` : [a, b]);
    if (!((a + b) in vocab)) vocab[a + b] = next++;
  }
  const added = [];
  const addTok = (content, special, opts = {}) => {
    // an added token that is already in the vocabulary keeps its id (as the package gives it)
    added.push({ id: content in vocab ? vocab[content] : next++, content, single_word: !!opts.single_word, lstrip: !!opts.lstrip,
      rstrip: !!opts.rstrip, normalized: opts.normalized ?? !special, special });
  };
  for (const s of SPECIALS) addTok(s, true);
  if (cfg.odd_added) {
    addTok('<tag>', false, { lstrip: true });
    addTok('!!', false, { rstrip: true });
    addTok('cat', false, { single_word: true });
    addTok(' dog', false, { normalized: true });
    addTok('<sep>', true, { lstrip: true, rstrip: true });
  }
  const bosId = added[0].id;
  const template = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: SPECIALS[0], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: SPECIALS[0], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: SPECIALS[0], type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [SPECIALS[0]]: { id: SPECIALS[0], ids: [bosId], tokens: [SPECIALS[0]] } },
  };
  const byteLevelPost = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true };
  const post = !cfg.bos ? byteLevelPost : cfg.post_sequence ? { type: 'Sequence', processors: [byteLevelPost, template] } : template;
  const tokJson = emptyTokenizer(cfg.pre);
  tokJson.added_tokens = added;
  tokJson.post_processor = post;
  tokJson.model.vocab = vocab;
  tokJson.model.merges = merges;
  tokJson.model.ignore_merges = cfg.ignore_merges;
  const jsonPath = path.join(outDir, `${name}.json`);
  const checked = tk.Tokenizer.fromString(JSON.stringify(tokJson));  // the package accepts it
  // Tokenizer.save writes merges as pairs; the DeepSeek file keeps the "a b" strings of older files.
  if (cfg.merges_as_strings) fs.writeFileSync(jsonPath, JSON.stringify(tokJson, null, 2) + '\n');
  else checked.save(jsonPath, true);
  fs.rmSync(trainedPath);
  const tok = tk.Tokenizer.fromFile(jsonPath);

  // 3. encode and decode
  const ids = [], plain = [], dec = [], decSkip = [];
  for (const t of texts) {
    const e = (await tok.encode(t)).getIds();
    ids.push(e.join(' '));
    plain.push((await tok.encode(t, null, { addSpecialTokens: false })).getIds().join(' '));
    dec.push(Buffer.from(await tok.decode(e, false), 'utf8').toString('hex'));
    decSkip.push(Buffer.from(await tok.decode(e, true), 'utf8').toString('hex'));
  }
  const vsize = tok.getVocabSize(true);
  const rids = [], rdec = [];
  for (let k = 0; k < 2000; k++) {
    const n = 1 + randint(12);
    const seq = [];
    for (let j = 0; j < n; j++) seq.push(rand() < 0.7 ? randint(256) : randint(vsize));
    rids.push(seq.join(' '));
    rdec.push(Buffer.from(await tok.decode(seq, false), 'utf8').toString('hex'));
  }
  const w = (suffix, rows) => fs.writeFileSync(path.join(outDir, `${name}.${suffix}`), rows.join('\n') + '\n');
  w('ids', ids); w('ids-plain', plain); w('decoded.hex', dec); w('decoded-skip.hex', decSkip);
  w('random-ids', rids); w('random-decoded.hex', rdec);

  const same = async (a, b) => (await tok.encode(a)).getIds().join(' ') === (await tok.encode(b)).getIds().join(' ');
  meta.tokenizers[name] = {
    vocab_size: vsize, model_vocab: Object.keys(vocab).length, merges: merges.length,
    trained_merges: trained.model.merges.length, added_tokens: added.length, bos_id: cfg.bos ? bosId : null,
    // ByteLevel's add_prefix_space puts a space before each piece of text: decode gives it back
    add_prefix_space: JSON.stringify(cfg.pre).includes('"add_prefix_space":true'),
    // added tokens that take the spaces next to them: a text holding one does not round-trip
    strip_tokens: added.filter((t) => t.lstrip || t.rstrip).map((t) => t.content),
    lone_surrogate_is_fffd: await same('a\uD800b', 'a\uFFFDb') && !(await same('a\uD800b', 'ab')),
  };
  console.log(`${name}: vocab ${vsize} (${merges.length} of ${trained.model.merges.length} trained merges), ` +
              `${texts.length} strings encoded`);
}
fs.rmSync(trainFile);
fs.writeFileSync(path.join(outDir, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
console.log(`tokenizers ${pkg.version}: reference written to ${outDir}`);
