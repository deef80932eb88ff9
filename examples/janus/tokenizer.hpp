// examples/janus/tokenizer.hpp - the Janus-Pro tokenizer: byte-level BPE read from a Hugging Face
// `tokenizer.json`, and the prompt template of the official trainer (spec §2.1-2.3). Plain C++17
// (no libtorch); regular expressions through PCRE2 (UTF + UCP, JIT when available), JSON through
// nlohmann_json. Issue 13.
//
// What is read from tokenizer.json (anything else is refused with an error that names the file and
// the field, e.g. "tok.json: `pre_tokenizer.pretokenizers[1].type` is `Metaspace` ..."):
//   normalizer      null, or a Sequence of no normalizers (both leave the text unchanged)
//   pre_tokenizer   null, Sequence, Split (pattern {Regex} or {String}; behavior Removed, Isolated,
//                   MergedWithPrevious, MergedWithNext, Contiguous; invert), ByteLevel
//                   (add_prefix_space, use_regex with GPT-2's regex; trim_offsets only moves
//                   offsets, which are not computed), Digits (individual_digits)
//   model           BPE: vocab, merges ("a b" strings or [a, b] pairs), ignore_merges, unk_token,
//                   fuse_unk, byte_fallback; dropout null (or 0); no continuing_subword_prefix or
//                   end_of_word_suffix
//   added_tokens    special and non-special, with single_word, lstrip, rstrip, normalized; they
//                   are split out of the text before pre-tokenization, longest match first
//   post_processor  null, TemplateProcessing (its `single` template), ByteLevel (no effect on
//                   ids), Sequence of these
//   decoder         null or ByteLevel
//
// Equality with Hugging Face's `tokenizers` (Rust; checked through its npm package by
// tests/tokenizer_reference.mjs and the test "tokenizer: reference ids"):
//  * Regexes of tokenizer.json are Oniguruma regexes there. They are compiled here by PCRE2 with
//    the differences that matter translated: `^`/`$` match at line boundaries (Oniguruma's
//    default, PCRE2_MULTILINE here), `\s`/`\S` are the White_Space property, `\w`/`\W` are
//    [\p{L}\p{M}\p{N}\p{Pc}], `\h`/`\H` are hex digits, `\uHHHH` is a code point (each checked
//    against the package with a probe, and by the tests); matches are iterated as the `onig` crate
//    does (an empty match right after the previous match is skipped). Characters assigned in a
//    Unicode version newer than this PCRE2's tables may be classified differently.
//  * Text that is not valid UTF-8 is first made valid: each maximal ill-formed subsequence becomes
//    U+FFFD (the Unicode / WHATWG practice). The reference cannot receive invalid UTF-8 at all: a
//    JavaScript string reaches Rust as UTF-8 with every lone surrogate replaced by U+FFFD, and
//    bytes read by Node (`Buffer.toString("utf8")`) get exactly the replacement done here.
//  * Deliberate differences, all on inputs Hugging Face accepts silently: a character with no
//    vocabulary entry, no unk_token and no byte fallback is an error here (dropped there); decode
//    of an id that is not in the vocabulary is an error here (skipped there); an added token whose
//    `id` differs from the one Hugging Face would give it is an error here (a log warning there).
//
// Janus-Pro / DeepSeek-LLM's pre-tokenizer (the configuration the reference test trains with):
//   Sequence[ Split(Regex "[\r\n]", Isolated),
//             Split(Regex "\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓ...𞤀-𞥃]+", Isolated)   (a list of letter ranges),
//             Split(Regex "\s?[!-/:-~！-／：-～‘-‟　-。]+", Isolated),
//             Split(Regex "\s+$", Isolated),
//             Split(Regex "[一-龥ࠀ-一가-퟿]+", Isolated),
//             Digits(individual_digits = true),
//             ByteLevel(add_prefix_space = false, use_regex = false) ]
//   Sources: llama.cpp src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_LLM (the five regexes,
//   transcribed from deepseek-ai/deepseek-llm-7b-base's tokenizer.json, with `\p{N}+` standing in
//   for the Digits step, which llama.cpp cannot express); chatllm.cpp models/deepseek.cpp (same
//   five regexes); a public tokenizer-training script "preprocessing copied from deepseekV2"
//   (pre_tokenizers.Split ×5 "isolated", Digits(individual_digits=True),
//   ByteLevel(add_prefix_space=False, use_regex=False)). Janus-Pro ships DeepSeek-LLM's tokenizer
//   (tokenizer_config.json: bos `<｜begin▁of▁sentence｜>`, eos `<｜end▁of▁sentence｜>`, pad
//   `<｜▁pad▁｜>`, additional specials `<image_placeholder>`, `<|User|>`, `<|Assistant|>`, ...).
//   Janus-Pro's own tokenizer.json was not available here (no network to the Hub): the
//   configuration above is that of the sources named, and the comparison test trains with it.
//   Should a real file's post-processor not add BOS (transformers' LlamaTokenizerFast adds it from
//   tokenizer_config.json's add_bos_token instead), encode_prompts says so rather than guess.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace janus {

/// A tokenizer.json tokenizer (see the header comment for what is supported). Immutable after
/// construction; encode() and decode() may be called from several threads at once.
class Tokenizer {
 public:
  /// Reads and validates `path`. Throws std::runtime_error naming the file and the field.
  static Tokenizer from_file(const std::string& path);
  /// The same from a JSON text; `source_name` replaces the file name in error messages.
  static Tokenizer from_json_string(const std::string& json, const std::string& source_name = "<tokenizer.json>");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  /// Token ids of `text` (any bytes: invalid UTF-8 is replaced as described above). With
  /// `add_special_tokens` the post-processor's template is applied (Janus: BOS first).
  std::vector<std::int64_t> encode(std::string_view text, bool add_special_tokens = true) const;
  /// Text of `ids` through the decoder; with `skip_special_tokens` the special added tokens are
  /// left out. Throws std::out_of_range naming an id that is not in the vocabulary.
  std::string decode(const std::vector<std::int64_t>& ids, bool skip_special_tokens = false) const;

  /// The id of a token string (added tokens first, then the model's vocabulary).
  std::optional<std::int64_t> token_to_id(std::string_view token) const;
  /// The string of an id (added token or vocabulary entry), if any.
  std::optional<std::string> id_to_token(std::int64_t id) const;
  /// One more than the largest id (model vocabulary and added tokens together).
  std::int64_t vocab_size() const;
  /// The ids the post-processor puts before the text of a single sequence (Janus: [BOS]).
  std::vector<std::int64_t> prefix_special_ids() const;
  /// `token_to_id` of the usual Janus-Pro special tokens.
  std::optional<std::int64_t> bos_id() const { return token_to_id("<｜begin▁of▁sentence｜>"); }
  std::optional<std::int64_t> eos_id() const { return token_to_id("<｜end▁of▁sentence｜>"); }
  std::optional<std::int64_t> pad_id() const { return token_to_id("<｜▁pad▁｜>"); }
  /// The name used in error messages (the file name).
  const std::string& source_name() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// `text` with every maximal ill-formed UTF-8 subsequence replaced by U+FFFD (EF BF BD).
std::string sanitize_utf8(std::string_view text);

/// The training prompt of the official trainer (spec §2.1): "User: " + strip(prompt) +
/// "\n\nAssistant:", where strip removes leading and trailing whitespace as Python's str.strip()
/// does (the characters for which str.isspace() is true: Unicode White_Space plus U+001C-U+001F).
std::string janus_prompt_text(std::string_view prompt);

/// A tokenized batch of prompts as the official trainer builds it (spec §2.2).
struct PromptIds {
  std::vector<std::vector<std::int64_t>> ids;             ///< [B][L + 1]
  std::vector<std::vector<std::int64_t>> attention_mask;  ///< [B][L + 1], 1 real / 0 pad
  std::int64_t pad_id = -1, image_start_id = -1, bos_id = -1;
};

/// Tokenizes janus_prompt_text(p) for each prompt with the post-processor's BOS, pads on the right
/// with `<｜▁pad▁｜>` (mask 0) to L = the longest row (or to `length` when `length` > 0; a row
/// longer than `length` is an error naming `length`), then appends `<begin_of_image>` (mask 1).
/// The image start id is `encode("<begin_of_image>")[1]` as in the official trainer, which must
/// be [BOS, id of the added token `<begin_of_image>`]. Throws std::runtime_error naming a special
/// token the tokenizer lacks.
PromptIds encode_prompts(const Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                         std::int64_t length = 0);

/// Decodes the escapes of one line of a TEXTS.txt file: `\n`, `\t`, `\\`. Throws
/// std::runtime_error naming `line_number` on any other escape or a trailing backslash.
std::string unescape_text_line(std::string_view line, std::size_t line_number);

/// `janus_trainer tokenize --tokenizer FILE.json --input TEXTS.txt --output IDS.jsonl`: one text
/// per line of `input_txt` ('\n'-separated; a last line without '\n' counts; a '\r' is text, so
/// a CRLF file gives texts ending in '\r'; escapes decoded by unescape_text_line), one line
/// {"ids": [...]} per text in `output_jsonl` with the special tokens
/// the post-processor adds. The output is written atomically (temporary file + rename) and an
/// existing output is refused unless `overwrite`. Returns 0, or 1 after writing the error to `log`.
int tokenize_file(const std::string& tokenizer_json, const std::string& input_txt,
                  const std::string& output_jsonl, std::ostream& log, bool overwrite = false);

}  // namespace janus
