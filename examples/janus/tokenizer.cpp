// examples/janus/tokenizer.cpp - see tokenizer.hpp. The encoding pipeline follows Hugging Face
// tokenizers' TokenizerImpl::encode: added tokens split out (non-normalized ones, then normalized
// ones), pre-tokenization of the remaining pieces, BPE of each pre-token, post-processing.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.hpp"

#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include "run_dir.hpp"

namespace janus {
namespace {

using json = nlohmann::json;

// ----------------------------------------------------------------------------------------------
// UTF-8
// ----------------------------------------------------------------------------------------------

constexpr const char* kReplacement = "\xEF\xBF\xBD";

// Length of the well-formed sequence at s[i], or 0 with `bad` = length of the maximal ill-formed
// subpart (>= 1) to replace by one U+FFFD (Unicode 15, §3.9, Table 3-7).
std::size_t utf8_seq(std::string_view s, std::size_t i, std::size_t& bad) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  bad = 1;
  if (b0 < 0x80) return 1;
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      bad = k;
      return 0;
    }
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = (k == 1) ? lo : 0x80, h = (k == 1) ? hi : 0xBF;
    if (b < l || b > h) {
      bad = k;
      return 0;
    }
  }
  return need + 1;
}

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0, bad = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t n = utf8_seq(s, i, bad);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// Decodes the (valid) character at s[i]; returns its length.
std::size_t decode_char(std::string_view s, std::size_t i, std::uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  std::size_t n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  cp = b0 & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return n;
}

std::size_t char_len_at(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  return b0 < 0x80 ? 1 : b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// A printable rendering of a token for error messages.
std::string qstr(std::string_view s) { return json(sanitize_utf8(s)).dump(); }

// ----------------------------------------------------------------------------------------------
// Errors naming the file and the field
// ----------------------------------------------------------------------------------------------

class Ctx {
 public:
  explicit Ctx(std::string file) : file_(std::move(file)) {}
  [[noreturn]] void fail(const std::string& field, const std::string& msg) const {
    throw std::runtime_error(file_ + ": `" + field + "` " + msg);
  }
  const json& get(const json& obj, const std::string& path, const char* key) const {
    if (!obj.is_object()) fail(path, "must be a JSON object");
    auto it = obj.find(key);
    if (it == obj.end()) fail(path + "." + key, "is missing");
    return *it;
  }
  bool get_bool(const json& obj, const std::string& path, const char* key, bool dflt) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) fail(path + "." + key, "must be true or false, not " + it->dump());
    return it->get<bool>();
  }
  std::string get_string(const json& obj, const std::string& path, const char* key) const {
    const json& v = get(obj, path, key);
    if (!v.is_string()) fail(path + "." + key, "must be a string, not " + v.dump());
    return v.get<std::string>();
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

// ----------------------------------------------------------------------------------------------
// PCRE2
// ----------------------------------------------------------------------------------------------

struct MatchData {
  pcre2_match_data* md = nullptr;
  MatchData() : md(pcre2_match_data_create(4, nullptr)) {
    if (!md) throw std::bad_alloc();
  }
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};

// Translates the escapes whose meaning differs between Oniguruma (Hugging Face) and PCRE2 (see
// tokenizer.hpp). Returns false with `why` for a construct that cannot be translated.
bool translate_onig_pattern(const std::string& in, std::string& out, std::string& why) {
  static const char* kWord = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
  out.clear();
  bool in_class = false;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '\\') {
      if (i + 1 >= in.size()) {
        out += c;
        continue;
      }
      const char e = in[i + 1];
      ++i;
      switch (e) {
        case 's': out += "\\p{White_Space}"; break;
        case 'S': out += "\\P{White_Space}"; break;
        case 'w': out += in_class ? std::string(kWord) : "[" + std::string(kWord) + "]"; break;
        case 'W':
          if (in_class) {
            why = "`\\W` inside a character class";
            return false;
          }
          out += "[^" + std::string(kWord) + "]";
          break;
        case 'h': out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]"; break;
        case 'H':
          if (in_class) {
            why = "`\\H` inside a character class";
            return false;
          }
          out += "[^0-9a-fA-F]";
          break;
        case 'u':  // Oniguruma's \uHHHH is PCRE2's \x{HHHH}
          if (i + 4 < in.size() && std::isxdigit(static_cast<unsigned char>(in[i + 1])) &&
              std::isxdigit(static_cast<unsigned char>(in[i + 2])) && std::isxdigit(static_cast<unsigned char>(in[i + 3])) &&
              std::isxdigit(static_cast<unsigned char>(in[i + 4]))) {
            out += "\\x{" + in.substr(i + 1, 4) + "}";
            i += 4;
            break;
          }
          why = "`\\u` not followed by four hex digits";
          return false;
        case 'Q':
          why = "`\\Q...\\E` quoting";
          return false;
        default:
          out += c;
          out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < in.size() && in[i + 1] == '^') out += in[++i];
      if (i + 1 < in.size() && in[i + 1] == ']') out += in[++i];
      continue;
    }
    if (in_class && c == '[' && i + 1 < in.size() && in[i + 1] == ':') {  // POSIX [:alpha:]
      const std::size_t end = in.find(":]", i + 2);
      if (end != std::string::npos) {
        out.append(in, i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == '[') {
      why = "a nested character class";
      return false;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return true;
}

class Regex {
 public:
  Regex(const std::string& pattern, bool onig_semantics, const Ctx& ctx, const std::string& field)
      : pattern_(pattern) {
    std::string translated = pattern, why;
    if (onig_semantics && !translate_onig_pattern(pattern, translated, why))
      ctx.fail(field, "uses " + why + ", which this tokenizer does not support: " + qstr(pattern));
    pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int err = 0;
    PCRE2_SIZE off = 0;
    const std::uint32_t opts = PCRE2_UTF | PCRE2_UCP | (onig_semantics ? PCRE2_MULTILINE : 0u);
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), opts, &err, &off, cc);
    pcre2_compile_context_free(cc);
    if (!code_) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof buf);
      ctx.fail(field, "is not a regular expression PCRE2 accepts (" + std::string(reinterpret_cast<char*>(buf)) +
                          " at offset " + std::to_string(off) + " of " + qstr(translated) + ")");
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls f(start, end) for each match, iterating as the `onig` crate's find_iter does: the
  // search resumes at the end of the previous match; an empty match at the end of the previous
  // match is skipped and the search moves on by one character.
  template <class F>
  void for_each_match(std::string_view s, MatchData& md, F&& f) const {
    std::size_t last_end = 0;
    bool have_last = false;
    std::size_t last_match_end = 0;
    while (last_end <= s.size()) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), last_end,
                                 PCRE2_NO_UTF_CHECK, md.md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(rc, buf, sizeof buf);
        throw std::runtime_error("regex " + qstr(pattern_) + " failed to match: " +
                                 std::string(reinterpret_cast<char*>(buf)));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.md);
      const std::size_t st = ov[0], en = ov[1];
      if (st == en && have_last && last_match_end == en) {
        last_end += last_end < s.size() ? char_len_at(s, last_end) : 1;
        continue;
      }
      last_end = en;
      have_last = true;
      last_match_end = en;
      f(st, en);
    }
  }

  // Whether the whole of `s` is one match of the pattern (anchored at both ends).
  bool full_match(std::string_view s, MatchData& md) const {
    const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0,
                               PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED | PCRE2_ENDANCHORED, md.md, nullptr);
    return rc >= 0;
  }

 private:
  std::string pattern_;
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

// Rust's regex crate classes that Hugging Face uses around added tokens (Unicode `\w` and `\s`).
struct CharClasses {
  Ctx ctx{"<built-in>"};
  Regex word{"[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", false, ctx, "word"};
  Regex space{"\\p{White_Space}", false, ctx, "space"};
};
const CharClasses& char_classes() {
  static const CharClasses c;
  return c;
}
bool char_is(const Regex& re, std::string_view s, std::size_t i, std::size_t n, MatchData& md) {
  return re.full_match(s.substr(i, n), md);
}

// ----------------------------------------------------------------------------------------------
// Byte-level alphabet (GPT-2's bytes_to_unicode)
// ----------------------------------------------------------------------------------------------

struct ByteAlphabet {
  std::string byte_to_str[256];
  std::unordered_map<std::uint32_t, unsigned char> cp_to_byte;
  ByteAlphabet() {
    std::uint32_t cps[256];
    bool direct[256] = {};
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    std::uint32_t n = 0;
    for (int b = 0; b < 256; ++b) cps[b] = direct[b] ? static_cast<std::uint32_t>(b) : 256 + n++;
    for (int b = 0; b < 256; ++b) {
      append_utf8(byte_to_str[b], cps[b]);
      cp_to_byte[cps[b]] = static_cast<unsigned char>(b);
    }
  }
};
const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet a;
  return a;
}

// ----------------------------------------------------------------------------------------------
// Pre-tokenizers
// ----------------------------------------------------------------------------------------------

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

using Span = std::pair<std::size_t, std::size_t>;

// Hugging Face's NormalizedString::split on (offsets, is_match) pieces covering the string.
void apply_behavior(const std::vector<std::pair<Span, bool>>& matches, Behavior b, std::vector<Span>& out) {
  std::vector<std::pair<Span, bool>> splits;  // (span, remove)
  switch (b) {
    case Behavior::Isolated:
      for (auto& m : matches) splits.push_back({m.first, false});
      break;
    case Behavior::Removed:
      splits = matches;
      break;
    case Behavior::Contiguous: {
      bool prev = false;
      for (auto& m : matches) {
        if (m.second == prev && !splits.empty())
          splits.back().first.second = m.first.second;
        else
          splits.push_back({m.first, false});
        prev = m.second;
      }
      break;
    }
    case Behavior::MergedWithPrevious: {
      bool prev = false;
      for (auto& m : matches) {
        if (m.second && !prev && !splits.empty())
          splits.back().first.second = m.first.second;
        else
          splits.push_back({m.first, false});
        prev = m.second;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      bool prev = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->second && !prev && !splits.empty())
          splits.back().first.first = it->first.first;
        else
          splits.push_back({it->first, false});
        prev = it->second;
      }
      std::reverse(splits.begin(), splits.end());
      break;
    }
  }
  for (auto& s : splits)
    if (!s.second && s.first.second > s.first.first) out.push_back(s.first);
}

struct Scratch {
  MatchData md;
  std::vector<std::pair<Span, bool>> matches;
  std::vector<Span> spans;
};

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their pre-tokens (empty pieces are dropped).
  virtual void apply(std::vector<std::string>& pieces, Scratch& sc) const = 0;
};

// Splits each piece at the matches of a regex or a literal, per `behavior` (and `invert`).
struct SplitPre : PreTokenizer {
  std::unique_ptr<Regex> re;  // null: literal
  std::string literal;
  Behavior behavior = Behavior::Isolated;
  bool invert = false;

  void matches_of(const std::string& p, Scratch& sc) const {
    sc.matches.clear();
    std::size_t prev = 0;
    auto on_match = [&](std::size_t st, std::size_t en) {
      if (prev != st) sc.matches.push_back({{prev, st}, false});
      sc.matches.push_back({{st, en}, true});
      prev = en;
    };
    if (re) {
      re->for_each_match(p, sc.md, on_match);
    } else {
      std::size_t pos = 0;
      while ((pos = p.find(literal, pos)) != std::string::npos) {
        on_match(pos, pos + literal.size());
        pos += literal.size();
      }
    }
    if (prev != p.size()) sc.matches.push_back({{prev, p.size()}, false});
    if (invert)
      for (auto& m : sc.matches) m.second = !m.second;
  }

  void apply(std::vector<std::string>& pieces, Scratch& sc) const override {
    std::vector<std::string> out;
    out.reserve(pieces.size() * 2);
    for (const std::string& p : pieces) {
      if (p.empty()) continue;
      matches_of(p, sc);
      sc.spans.clear();
      apply_behavior(sc.matches, behavior, sc.spans);
      for (const Span& s : sc.spans) out.emplace_back(p, s.first, s.second - s.first);
    }
    pieces.swap(out);
  }
};

// GPT-2's pre-tokenization regex, which ByteLevel applies with use_regex.
const char* kGpt2Regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct ByteLevelPre : PreTokenizer {
  bool add_prefix_space = true;
  std::unique_ptr<Regex> re;  // use_regex

  void apply(std::vector<std::string>& pieces, Scratch& sc) const override {
    const ByteAlphabet& ba = byte_alphabet();
    std::vector<std::string> out;
    out.reserve(pieces.size() * 2);
    std::string tmp;
    for (const std::string& p0 : pieces) {
      if (p0.empty()) continue;
      const std::string* p = &p0;
      if (add_prefix_space && p0[0] != ' ') {
        tmp = " " + p0;
        p = &tmp;
      }
      auto emit = [&](std::size_t st, std::size_t en) {
        std::string m;
        m.reserve((en - st) * 2);
        for (std::size_t i = st; i < en; ++i) m += ba.byte_to_str[static_cast<unsigned char>((*p)[i])];
        out.push_back(std::move(m));
      };
      if (re) {
        sc.matches.clear();
        std::size_t prev = 0;
        re->for_each_match(*p, sc.md, [&](std::size_t st, std::size_t en) {
          if (prev != st) sc.matches.push_back({{prev, st}, false});
          sc.matches.push_back({{st, en}, true});
          prev = en;
        });
        if (prev != p->size()) sc.matches.push_back({{prev, p->size()}, false});
        sc.spans.clear();
        apply_behavior(sc.matches, Behavior::Isolated, sc.spans);
        for (const Span& s : sc.spans) emit(s.first, s.second);
      } else {
        emit(0, p->size());
      }
    }
    pieces.swap(out);
  }
};

struct SequencePre : PreTokenizer {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  void apply(std::vector<std::string>& pieces, Scratch& sc) const override {
    for (auto& s : steps) s->apply(pieces, sc);
  }
};

Behavior parse_behavior(const Ctx& ctx, const json& j, const std::string& path) {
  const std::string b = ctx.get_string(j, path, "behavior");
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  ctx.fail(path + ".behavior", "is `" + b +
                                   "`; expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const Ctx& ctx, const json& j, const std::string& path) {
  const std::string type = ctx.get_string(j, path, "type");
  if (type == "Sequence") {
    auto seq = std::make_unique<SequencePre>();
    const json& list = ctx.get(j, path, "pretokenizers");
    if (!list.is_array()) ctx.fail(path + ".pretokenizers", "must be an array");
    for (std::size_t i = 0; i < list.size(); ++i)
      seq->steps.push_back(parse_pre_tokenizer(ctx, list[i], path + ".pretokenizers[" + std::to_string(i) + "]"));
    return seq;
  }
  if (type == "Split") {
    auto sp = std::make_unique<SplitPre>();
    const json& pat = ctx.get(j, path, "pattern");
    if (pat.is_object() && pat.size() == 1 && pat.contains("Regex") && pat["Regex"].is_string()) {
      sp->re = std::make_unique<Regex>(pat["Regex"].get<std::string>(), true, ctx, path + ".pattern.Regex");
    } else if (pat.is_object() && pat.size() == 1 && pat.contains("String") && pat["String"].is_string()) {
      sp->literal = pat["String"].get<std::string>();
      if (sp->literal.empty()) ctx.fail(path + ".pattern.String", "is empty");
    } else {
      ctx.fail(path + ".pattern", "must be {\"Regex\": string} or {\"String\": string}, not " + pat.dump());
    }
    sp->behavior = parse_behavior(ctx, j, path);
    sp->invert = ctx.get_bool(j, path, "invert", false);
    return sp;
  }
  if (type == "ByteLevel") {
    auto bl = std::make_unique<ByteLevelPre>();
    bl->add_prefix_space = ctx.get_bool(j, path, "add_prefix_space", true);
    if (ctx.get_bool(j, path, "use_regex", true)) bl->re = std::make_unique<Regex>(kGpt2Regex, true, ctx, path);
    return bl;
  }
  if (type == "Digits") {
    // Hugging Face splits on char::is_numeric (general categories Nd, Nl, No = \p{N}).
    auto sp = std::make_unique<SplitPre>();
    sp->re = std::make_unique<Regex>("\\p{N}", true, ctx, path);
    sp->behavior = ctx.get_bool(j, path, "individual_digits", false) ? Behavior::Isolated : Behavior::Contiguous;
    return sp;
  }
  ctx.fail(path + ".type", "is `" + type + "`; supported pre-tokenizers: Sequence, Split, ByteLevel, Digits");
}

// ----------------------------------------------------------------------------------------------
// Post-processor
// ----------------------------------------------------------------------------------------------

struct TemplatePiece {
  bool is_sequence = false;        // $A
  std::vector<std::int64_t> ids;   // special token ids
};

void parse_post_processor(const Ctx& ctx, const json& j, const std::string& path,
                          std::vector<std::vector<TemplatePiece>>& templates) {
  if (j.is_null()) return;
  const std::string type = ctx.get_string(j, path, "type");
  if (type == "Sequence") {
    const json& list = ctx.get(j, path, "processors");
    if (!list.is_array()) ctx.fail(path + ".processors", "must be an array");
    for (std::size_t i = 0; i < list.size(); ++i)
      parse_post_processor(ctx, list[i], path + ".processors[" + std::to_string(i) + "]", templates);
    return;
  }
  if (type == "ByteLevel") return;  // changes offsets only
  if (type == "TemplateProcessing") {
    const json& single = ctx.get(j, path, "single");
    if (!single.is_array()) ctx.fail(path + ".single", "must be an array");
    const json& specials = ctx.get(j, path, "special_tokens");
    if (!specials.is_object()) ctx.fail(path + ".special_tokens", "must be an object");
    std::vector<TemplatePiece> tpl;
    int sequences = 0;
    for (std::size_t i = 0; i < single.size(); ++i) {
      const std::string ip = path + ".single[" + std::to_string(i) + "]";
      const json& piece = single[i];
      if (piece.is_object() && piece.contains("Sequence")) {
        const json& seq = piece["Sequence"];
        const std::string id = ctx.get_string(seq, ip + ".Sequence", "id");
        if (id != "A") ctx.fail(ip + ".Sequence.id", "is `" + id + "`; a single-sequence template uses `A`");
        TemplatePiece tp;
        tp.is_sequence = true;
        tpl.push_back(tp);
        ++sequences;
      } else if (piece.is_object() && piece.contains("SpecialToken")) {
        const std::string name = ctx.get_string(piece["SpecialToken"], ip + ".SpecialToken", "id");
        auto it = specials.find(name);
        if (it == specials.end())
          ctx.fail(path + ".special_tokens", "has no entry " + qstr(name) + " used by " + ip);
        const std::string sp = path + ".special_tokens[" + qstr(name) + "]";
        const json& ids = ctx.get(*it, sp, "ids");
        if (!ids.is_array()) ctx.fail(sp + ".ids", "must be an array of ids");
        TemplatePiece tp;
        for (std::size_t k = 0; k < ids.size(); ++k) {
          if (!ids[k].is_number_integer() || ids[k].get<std::int64_t>() < 0)
            ctx.fail(sp + ".ids[" + std::to_string(k) + "]", "must be a non-negative integer");
          tp.ids.push_back(ids[k].get<std::int64_t>());
        }
        tpl.push_back(tp);
      } else {
        ctx.fail(ip, "must be {\"Sequence\": ...} or {\"SpecialToken\": ...}, not " + piece.dump());
      }
    }
    if (sequences != 1) ctx.fail(path + ".single", "must contain $A exactly once");
    templates.push_back(std::move(tpl));
    return;
  }
  ctx.fail(path + ".type", "is `" + type + "`; supported post-processors: TemplateProcessing, ByteLevel, Sequence");
}

// ----------------------------------------------------------------------------------------------
// BPE
// ----------------------------------------------------------------------------------------------

struct AddedToken {
  std::string content;
  std::int64_t id = 0;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// A set of added tokens matched leftmost-longest (as daachorse's LeftmostLongest automaton).
struct AddedMatcher {
  std::vector<const AddedToken*> by_first_byte[256];  // longest first
  bool empty = true;
  void build(const std::vector<const AddedToken*>& toks) {
    for (auto* t : toks) {
      by_first_byte[static_cast<unsigned char>(t->content[0])].push_back(t);
      empty = false;
    }
    for (auto& v : by_first_byte)
      std::stable_sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->content.size() > b->content.size(); });
  }
};

}  // namespace

// ----------------------------------------------------------------------------------------------
// Tokenizer::Impl
// ----------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string source;
  // model
  std::unordered_map<std::string, std::int64_t> vocab;
  std::unordered_map<std::int64_t, std::string> vocab_r;
  std::unordered_map<std::uint64_t, std::pair<std::uint32_t, std::int64_t>> merges;  // (a,b) -> (rank, new id)
  bool ignore_merges = false, fuse_unk = false, byte_fallback = false;
  std::optional<std::string> unk_token;
  // added tokens
  std::vector<AddedToken> added;
  std::unordered_map<std::string, std::int64_t> added_by_content;
  std::unordered_map<std::int64_t, std::size_t> added_by_id;
  std::unordered_set<std::string> special_contents;
  AddedMatcher raw_matcher, normalized_matcher;
  // pipeline
  std::unique_ptr<PreTokenizer> pre;
  std::vector<std::vector<TemplatePiece>> templates;
  enum class Decoder { None, ByteLevel } decoder = Decoder::None;
  std::int64_t max_id = -1;

  static std::uint64_t pair_key(std::int64_t a, std::int64_t b) {
    return (static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint64_t>(b);
  }

  // Hugging Face's AddedVocabulary::find_matches on one piece: (token or null, span) covering it.
  void find_added(std::string_view s, const AddedMatcher& m, std::vector<std::pair<const AddedToken*, Span>>& out,
                  MatchData& md) const {
    out.clear();
    if (m.empty) {
      out.push_back({nullptr, {0, s.size()}});
      return;
    }
    const CharClasses& cc = char_classes();
    std::size_t start_offset = 0, i = 0;
    while (i < s.size()) {
      const AddedToken* hit = nullptr;
      for (const AddedToken* t : m.by_first_byte[static_cast<unsigned char>(s[i])]) {
        if (s.compare(i, t->content.size(), t->content) == 0) {
          hit = t;
          break;
        }
      }
      if (!hit) {
        ++i;
        continue;
      }
      std::size_t start = i, stop = i + hit->content.size();
      i = stop;  // a match consumes its text even when discarded below
      if (hit->single_word) {
        bool start_space = true, stop_space = true;
        if (start > 0) {
          std::size_t k = start - 1;
          while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
          start_space = !char_is(cc.word, s, k, start - k, md);
        }
        if (stop < s.size()) stop_space = !char_is(cc.word, s, stop, char_len_at(s, stop), md);
        if (!start_space || !stop_space) continue;
      }
      if (hit->lstrip) {
        std::size_t k = start;
        while (k > 0) {
          std::size_t b = k - 1;
          while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
          if (!char_is(cc.space, s, b, k - b, md)) break;
          k = b;
        }
        start = std::max(k, start_offset);
      }
      if (hit->rstrip) {
        while (stop < s.size()) {
          const std::size_t n = char_len_at(s, stop);
          if (!char_is(cc.space, s, stop, n, md)) break;
          stop += n;
        }
        // The automaton resumes at the end of the match itself, not of the stripped spaces.
      }
      if (start_offset < start) out.push_back({nullptr, {start_offset, start}});
      out.push_back({hit, {start, stop}});
      start_offset = stop;
    }
    if (start_offset != s.size()) out.push_back({nullptr, {start_offset, s.size()}});
  }

  // BPE of one pre-token (Hugging Face's BPE::merge_word + Word::merge_all without dropout).
  void bpe(const std::string& w, std::vector<std::int64_t>& out) const {
    if (ignore_merges) {
      auto it = vocab.find(w);
      if (it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    struct Sym {
      std::int64_t id;
      std::ptrdiff_t prev, next;
      bool gone;
    };
    std::vector<Sym> syms;
    syms.reserve(w.size());
    auto add = [&](std::int64_t id) {
      const auto n = static_cast<std::ptrdiff_t>(syms.size());
      syms.push_back({id, n - 1, -1, false});
      if (n > 0) syms[n - 1].next = n;
    };
    std::optional<std::int64_t> pending_unk;
    for (std::size_t i = 0; i < w.size();) {
      const std::size_t n = char_len_at(w, i);
      auto it = vocab.find(w.substr(i, n));
      if (it != vocab.end()) {
        if (pending_unk) add(*pending_unk), pending_unk.reset();
        add(it->second);
      } else {
        bool done = false;
        if (byte_fallback) {
          std::vector<std::int64_t> bytes;
          for (std::size_t k = i; k < i + n; ++k) {
            char code[8];
            std::snprintf(code, sizeof code, "<0x%02X>", static_cast<unsigned char>(w[k]));
            auto bt = vocab.find(code);
            if (bt == vocab.end()) break;
            bytes.push_back(bt->second);
          }
          if (bytes.size() == n) {
            for (auto b : bytes) add(b);
            done = true;
          }
        }
        if (!done) {
          if (!unk_token)
            throw std::runtime_error(source + ": the character " + qstr(w.substr(i, n)) + " of the pre-token " +
                                     qstr(w) + " has no vocabulary entry and `model.unk_token` is null");
          auto ut = vocab.find(*unk_token);
          if (ut == vocab.end())
            throw std::runtime_error(source + ": `model.unk_token` " + qstr(*unk_token) + " is not in `model.vocab`");
          if (pending_unk && !fuse_unk) add(*pending_unk);
          pending_unk = ut->second;
        }
      }
      i += n;
    }
    if (pending_unk) add(*pending_unk);

    struct Merge {
      std::uint32_t rank;
      std::ptrdiff_t pos;
      std::int64_t new_id;
      bool operator<(const Merge& o) const {  // priority_queue top = lowest rank, then lowest pos
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    std::priority_queue<Merge> q;
    for (std::size_t k = 0; k + 1 < syms.size(); ++k) {
      auto it = merges.find(pair_key(syms[k].id, syms[k + 1].id));
      if (it != merges.end()) q.push({it->second.first, static_cast<std::ptrdiff_t>(k), it->second.second});
    }
    while (!q.empty()) {
      const Merge top = q.top();
      q.pop();
      Sym& cur = syms[top.pos];
      if (cur.gone || cur.next < 0) continue;
      const std::ptrdiff_t right = cur.next;
      auto it = merges.find(pair_key(cur.id, syms[right].id));
      if (it == merges.end() || it->second.second != top.new_id) continue;
      cur.id = top.new_id;
      syms[right].gone = true;
      cur.next = syms[right].next;
      if (cur.next >= 0) syms[cur.next].prev = top.pos;
      if (cur.prev >= 0) {
        auto pm = merges.find(pair_key(syms[cur.prev].id, cur.id));
        if (pm != merges.end()) q.push({pm->second.first, cur.prev, pm->second.second});
      }
      if (cur.next >= 0) {
        auto nm = merges.find(pair_key(cur.id, syms[cur.next].id));
        if (nm != merges.end()) q.push({nm->second.first, top.pos, nm->second.second});
      }
    }
    for (const Sym& s : syms)
      if (!s.gone) out.push_back(s.id);
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

const std::string& Tokenizer::source_name() const { return impl_->source; }

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open the tokenizer file: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error(path + ": cannot read the tokenizer file");
  return from_json_string(ss.str(), path);
}

Tokenizer Tokenizer::from_json_string(const std::string& text, const std::string& source_name) {
  const Ctx ctx(source_name);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::runtime_error(source_name + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error(source_name + ": the top level must be a JSON object");
  auto impl = std::make_unique<Impl>();
  impl->source = source_name;

  // normalizer
  {
    auto it = j.find("normalizer");
    if (it != j.end() && !it->is_null()) {
      const std::string type = ctx.get_string(*it, "normalizer", "type");
      const bool empty_seq = type == "Sequence" && it->contains("normalizers") && (*it)["normalizers"].is_array() &&
                             (*it)["normalizers"].empty();
      if (!empty_seq)
        ctx.fail("normalizer.type", "is `" + type + "`; only a null normalizer (or an empty Sequence) is supported");
    }
  }
  // truncation / padding would change the ids
  for (const char* k : {"truncation", "padding"}) {
    auto it = j.find(k);
    if (it != j.end() && !it->is_null()) ctx.fail(k, "is set; truncation and padding in tokenizer.json are not supported");
  }

  // model
  const json& model = ctx.get(j, "", "model");
  {
    auto tt = model.find("type");
    if (tt != model.end()) {
      if (!tt->is_string() || tt->get<std::string>() != "BPE")
        ctx.fail("model.type", "is " + tt->dump() + "; only BPE is supported");
    } else if (!model.contains("merges")) {
      ctx.fail("model.type", "is missing and the model has no `merges`: only BPE is supported");
    }
  }
  {
    auto d = model.find("dropout");
    if (d != model.end() && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0))
      ctx.fail("model.dropout", "is " + d->dump() + "; BPE dropout (random tokenization) is not supported");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      auto it = model.find(k);
      if (it != model.end() && !it->is_null()) ctx.fail(std::string("model.") + k, "is set; it is not supported");
    }
    impl->ignore_merges = ctx.get_bool(model, "model", "ignore_merges", false);
    impl->fuse_unk = ctx.get_bool(model, "model", "fuse_unk", false);
    impl->byte_fallback = ctx.get_bool(model, "model", "byte_fallback", false);
    auto u = model.find("unk_token");
    if (u != model.end() && !u->is_null()) {
      if (!u->is_string()) ctx.fail("model.unk_token", "must be a string or null");
      impl->unk_token = u->get<std::string>();
    }
  }
  const json& vocab = ctx.get(model, "model", "vocab");
  if (!vocab.is_object()) ctx.fail("model.vocab", "must be an object {token: id}");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
        it.value().get<std::int64_t>() > 0x7FFFFFFF)
      ctx.fail("model.vocab[" + qstr(it.key()) + "]", "must be an integer id in [0, 2^31), not " + it.value().dump());
    const std::int64_t id = it.value().get<std::int64_t>();
    if (!impl->vocab_r.emplace(id, it.key()).second)
      ctx.fail("model.vocab[" + qstr(it.key()) + "]", "repeats the id " + std::to_string(id) + " of " +
                                                            qstr(impl->vocab_r[id]));
    impl->vocab.emplace(it.key(), id);
    impl->max_id = std::max(impl->max_id, id);
  }
  const json& merges = ctx.get(model, "model", "merges");
  if (!merges.is_array()) ctx.fail("model.merges", "must be an array");
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const std::string mp = "model.merges[" + std::to_string(r) + "]";
    const json& m = merges[r];
    std::string a, b;
    if (m.is_string() != merges[0].is_string())
      ctx.fail(mp, "is " + std::string(m.is_string() ? "a string" : "not a string") + " but `model.merges[0]` is " +
                       (merges[0].is_string() ? "a string" : "not") +
                       ": the merges must be all \"a b\" strings or all [\"a\", \"b\"] pairs");
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const std::size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        ctx.fail(mp, "is " + qstr(s) + "; a merge string must be two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      ctx.fail(mp, "must be a string \"a b\" or a pair [\"a\", \"b\"], not " + m.dump());
    }
    auto ia = impl->vocab.find(a), ib = impl->vocab.find(b), inew = impl->vocab.find(a + b);
    if (ia == impl->vocab.end()) ctx.fail(mp, "uses the token " + qstr(a) + ", which is not in `model.vocab`");
    if (ib == impl->vocab.end()) ctx.fail(mp, "uses the token " + qstr(b) + ", which is not in `model.vocab`");
    if (inew == impl->vocab.end())
      ctx.fail(mp, "makes the token " + qstr(a + b) + ", which is not in `model.vocab`");
    // A repeated pair keeps its last rank, as in Hugging Face (a map filled in order).
    impl->merges[Impl::pair_key(ia->second, ib->second)] = {static_cast<std::uint32_t>(r), inew->second};
  }

  // added tokens: ids as Hugging Face's AddedVocabulary::add_tokens gives them, in list order
  {
    auto at = j.find("added_tokens");
    if (at != j.end() && !at->is_null()) {
      if (!at->is_array()) ctx.fail("added_tokens", "must be an array");
      const std::int64_t model_size = static_cast<std::int64_t>(impl->vocab.size());
      std::int64_t next_id = model_size;
      for (std::size_t i = 0; i < at->size(); ++i) {
        const std::string ap = "added_tokens[" + std::to_string(i) + "]";
        const json& t = (*at)[i];
        AddedToken tok;
        tok.content = ctx.get_string(t, ap, "content");
        const json& idj = ctx.get(t, ap, "id");
        if (!idj.is_number_integer() || idj.get<std::int64_t>() < 0 || idj.get<std::int64_t>() > 0x7FFFFFFF)
          ctx.fail(ap + ".id", "must be an integer id in [0, 2^31)");
        tok.id = idj.get<std::int64_t>();
        tok.single_word = ctx.get_bool(t, ap, "single_word", false);
        tok.lstrip = ctx.get_bool(t, ap, "lstrip", false);
        tok.rstrip = ctx.get_bool(t, ap, "rstrip", false);
        tok.special = ctx.get_bool(t, ap, "special", false);
        tok.normalized = ctx.get_bool(t, ap, "normalized", !tok.special);
        if (tok.content.empty()) ctx.fail(ap + ".content", "is empty");
        if (!is_valid_utf8(tok.content)) ctx.fail(ap + ".content", "is not valid UTF-8");
        std::int64_t expect;
        if (auto e = impl->added_by_content.find(tok.content); e != impl->added_by_content.end()) {
          expect = e->second;
        } else if (auto v = impl->vocab.find(tok.content); v != impl->vocab.end()) {
          expect = v->second;
        } else {
          expect = next_id++;
        }
        if (tok.id != expect)
          ctx.fail(ap + ".id", "is " + std::to_string(tok.id) + " but Hugging Face tokenizers gives " +
                                   qstr(tok.content) + " the id " + std::to_string(expect) +
                                   " (the model vocabulary has " + std::to_string(model_size) +
                                   " entries; added tokens not in it are numbered from there in list order)");
        if (impl->added_by_content.count(tok.content)) {  // a repeated entry replaces the earlier one
          impl->added[impl->added_by_id[tok.id]] = tok;
        } else {
          impl->added_by_id[tok.id] = impl->added.size();
          impl->added_by_content[tok.content] = tok.id;
          impl->added.push_back(tok);
        }
        if (tok.special) impl->special_contents.insert(tok.content);
        impl->max_id = std::max(impl->max_id, tok.id);
      }
      std::vector<const AddedToken*> raw, norm;
      for (const AddedToken& t : impl->added) (t.normalized ? norm : raw).push_back(&t);
      impl->raw_matcher.build(raw);
      impl->normalized_matcher.build(norm);
    }
  }

  // pre-tokenizer, post-processor, decoder
  {
    auto pt = j.find("pre_tokenizer");
    if (pt != j.end() && !pt->is_null()) impl->pre = parse_pre_tokenizer(ctx, *pt, "pre_tokenizer");
    auto pp = j.find("post_processor");
    if (pp != j.end()) parse_post_processor(ctx, *pp, "post_processor", impl->templates);
    for (const auto& tpl : impl->templates)
      for (const auto& piece : tpl)
        for (auto id : piece.ids)
          if (!impl->vocab_r.count(id) && !impl->added_by_id.count(id))
            ctx.fail("post_processor", "adds the id " + std::to_string(id) + ", which is in neither `model.vocab` nor `added_tokens`");
    auto dec = j.find("decoder");
    if (dec != j.end() && !dec->is_null()) {
      const std::string type = ctx.get_string(*dec, "decoder", "type");
      if (type != "ByteLevel") ctx.fail("decoder.type", "is `" + type + "`; only ByteLevel (or null) is supported");
      impl->decoder = Impl::Decoder::ByteLevel;
    }
  }
  return Tokenizer(std::move(impl));
}

std::vector<std::int64_t> Tokenizer::encode(std::string_view text_in, bool add_special_tokens) const {
  const Impl& im = *impl_;
  std::string sanitized;
  std::string_view text = text_in;
  if (!is_valid_utf8(text)) {
    sanitized = sanitize_utf8(text);
    text = sanitized;
  }
  thread_local Scratch sc;
  std::vector<std::int64_t> ids;

  // 1. added tokens: non-normalized ones on the raw text, then normalized ones on the rest (the
  // normalizer is the identity).
  struct Piece {
    std::string_view text;
    const AddedToken* token;
  };
  std::vector<Piece> pieces, next;
  std::vector<std::pair<const AddedToken*, Span>> found;
  pieces.push_back({text, nullptr});
  for (const AddedMatcher* m : {&im.raw_matcher, &im.normalized_matcher}) {
    if (m->empty) continue;
    next.clear();
    for (const Piece& p : pieces) {
      if (p.token) {
        next.push_back(p);
        continue;
      }
      im.find_added(p.text, *m, found, sc.md);
      for (auto& f : found)
        if (f.second.second > f.second.first)
          next.push_back({p.text.substr(f.second.first, f.second.second - f.second.first), f.first});
    }
    pieces.swap(next);
  }

  // 2. pre-tokenization and BPE of the text between added tokens
  std::vector<std::int64_t> seq;
  std::vector<std::string> pre;
  for (const Piece& p : pieces) {
    if (p.token) {
      seq.push_back(p.token->id);
      continue;
    }
    if (p.text.empty()) continue;
    pre.clear();
    pre.emplace_back(p.text);
    if (im.pre) im.pre->apply(pre, sc);
    for (const std::string& w : pre)
      if (!w.empty()) im.bpe(w, seq);
  }

  // 3. post-processing
  if (!add_special_tokens || im.templates.empty()) return seq;
  for (const auto& tpl : im.templates) {
    ids.clear();
    for (const TemplatePiece& piece : tpl) {
      if (piece.is_sequence)
        ids.insert(ids.end(), seq.begin(), seq.end());
      else
        ids.insert(ids.end(), piece.ids.begin(), piece.ids.end());
    }
    seq.swap(ids);
  }
  return seq;
}

std::string Tokenizer::decode(const std::vector<std::int64_t>& ids, bool skip_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<const std::string*> tokens;
  tokens.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t id = ids[i];
    const std::string* tok = nullptr;
    if (auto a = im.added_by_id.find(id); a != im.added_by_id.end())
      tok = &im.added[a->second].content;
    else if (auto v = im.vocab_r.find(id); v != im.vocab_r.end())
      tok = &v->second;
    if (!tok)
      throw std::out_of_range(im.source + ": decode: ids[" + std::to_string(i) + "] = " + std::to_string(id) +
                              " is not in the vocabulary");
    if (skip_special_tokens && im.special_contents.count(*tok)) continue;
    tokens.push_back(tok);
  }
  std::string out;
  if (im.decoder == Impl::Decoder::None) {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += *tokens[i];
    }
    return out;
  }
  // ByteLevel: a token made only of byte-alphabet characters gives those bytes; any other token
  // (an added token such as "<｜begin▁of▁sentence｜>") gives its own UTF-8 bytes. Then UTF-8 with
  // ill-formed sequences replaced (Rust's String::from_utf8_lossy).
  const ByteAlphabet& ba = byte_alphabet();
  std::string bytes, tb;
  for (const std::string* t : tokens) {
    tb.clear();
    bool all = true;
    for (std::size_t i = 0; i < t->size();) {
      std::uint32_t cp;
      const std::size_t n = decode_char(*t, i, cp);
      auto it = ba.cp_to_byte.find(cp);
      if (it == ba.cp_to_byte.end()) {
        all = false;
        break;
      }
      tb += static_cast<char>(it->second);
      i += n;
    }
    bytes += all ? tb : *t;
  }
  return sanitize_utf8(bytes);
}

std::optional<std::int64_t> Tokenizer::token_to_id(std::string_view token) const {
  const std::string t(token);
  if (auto a = impl_->added_by_content.find(t); a != impl_->added_by_content.end()) return a->second;
  if (auto v = impl_->vocab.find(t); v != impl_->vocab.end()) return v->second;
  return std::nullopt;
}

std::optional<std::string> Tokenizer::id_to_token(std::int64_t id) const {
  if (auto a = impl_->added_by_id.find(id); a != impl_->added_by_id.end()) return impl_->added[a->second].content;
  if (auto v = impl_->vocab_r.find(id); v != impl_->vocab_r.end()) return v->second;
  return std::nullopt;
}

std::int64_t Tokenizer::vocab_size() const { return impl_->max_id + 1; }

std::vector<std::int64_t> Tokenizer::prefix_special_ids() const {
  std::vector<std::int64_t> out;
  for (const auto& tpl : impl_->templates) {
    std::vector<std::int64_t> before;
    for (const auto& piece : tpl) {
      if (piece.is_sequence) {
        // a later template sees the earlier one's output as its $A
        before.insert(before.end(), out.begin(), out.end());
        break;
      }
      before.insert(before.end(), piece.ids.begin(), piece.ids.end());
    }
    out.swap(before);
  }
  return out;
}

// ----------------------------------------------------------------------------------------------
// Free functions
// ----------------------------------------------------------------------------------------------

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0, bad = 0;
  while (i < s.size()) {
    const std::size_t n = utf8_seq(s, i, bad);
    if (n) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out += kReplacement;
      i += bad;
    }
  }
  return out;
}

namespace {
// Python's str.isspace(): bidirectional class WS, B or S, or category Zs.
bool py_isspace(std::uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
}  // namespace

std::string janus_prompt_text(std::string_view prompt_in) {
  const std::string prompt = sanitize_utf8(prompt_in);
  std::size_t b = 0, e = prompt.size();
  while (b < e) {
    std::uint32_t cp;
    const std::size_t n = decode_char(prompt, b, cp);
    if (!py_isspace(cp)) break;
    b += n;
  }
  while (e > b) {
    std::size_t k = e - 1;
    while (k > b && (static_cast<unsigned char>(prompt[k]) & 0xC0) == 0x80) --k;
    std::uint32_t cp;
    decode_char(prompt, k, cp);
    if (!py_isspace(cp)) break;
    e = k;
  }
  return "User: " + prompt.substr(b, e - b) + "\n\nAssistant:";
}

PromptIds encode_prompts(const Tokenizer& tok, const std::vector<std::string>& prompts, std::int64_t length) {
  const std::string& src = tok.source_name();
  auto need = [&](const char* name) {
    auto id = tok.token_to_id(name);
    if (!id) throw std::runtime_error(src + ": the tokenizer has no token " + std::string(name) + ", which the Janus prompt needs");
    return *id;
  };
  PromptIds out;
  out.bos_id = need("<｜begin▁of▁sentence｜>");
  out.pad_id = need("<｜▁pad▁｜>");
  const std::int64_t boi = need("<begin_of_image>");
  const std::vector<std::int64_t> prefix = tok.prefix_special_ids();
  if (prefix != std::vector<std::int64_t>{out.bos_id})
    throw std::runtime_error(src + ": the post-processor must put exactly <｜begin▁of▁sentence｜> (id " +
                             std::to_string(out.bos_id) + ") before the text, as the Janus prompt needs; it puts " +
                             json(prefix).dump());
  const std::vector<std::int64_t> boi_ids = tok.encode("<begin_of_image>", true);
  if (boi_ids.size() != 2 || boi_ids[0] != out.bos_id || boi_ids[1] != boi)
    throw std::runtime_error(src + ": encode(\"<begin_of_image>\") is " + json(boi_ids).dump() + ", not [BOS, " +
                             std::to_string(boi) + "]: <begin_of_image> must be an added token");
  out.image_start_id = boi_ids[1];

  std::vector<std::vector<std::int64_t>> rows;
  std::size_t longest = 0, longest_at = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    rows.push_back(tok.encode(janus_prompt_text(prompts[i]), true));
    if (rows.back().size() > longest) longest = rows.back().size(), longest_at = i;
  }
  if (length < 0) throw std::invalid_argument("encode_prompts: `length` (" + std::to_string(length) + ") is negative");
  std::size_t L = longest;
  if (length > 0) {
    if (static_cast<std::size_t>(length) < longest)
      throw std::invalid_argument("encode_prompts: `length` (" + std::to_string(length) + ") is shorter than prompt " +
                                  std::to_string(longest_at) + ", which has " + std::to_string(longest) +
                                  " tokens with BOS");
    L = static_cast<std::size_t>(length);
  }
  for (auto& r : rows) {
    std::vector<std::int64_t> mask(r.size(), 1);
    r.resize(L, out.pad_id);
    mask.resize(L, 0);
    r.push_back(out.image_start_id);
    mask.push_back(1);
    out.ids.push_back(std::move(r));
    out.attention_mask.push_back(std::move(mask));
  }
  return out;
}

std::string unescape_text_line(std::string_view line, std::size_t line_number) {
  std::string out;
  out.reserve(line.size());
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\\') {
      out += line[i];
      continue;
    }
    if (i + 1 >= line.size())
      throw std::runtime_error("line " + std::to_string(line_number) + ": a backslash ends the line (write \\\\ for a backslash)");
    const char e = line[++i];
    if (e == 'n')
      out += '\n';
    else if (e == 't')
      out += '\t';
    else if (e == '\\')
      out += '\\';
    else
      throw std::runtime_error("line " + std::to_string(line_number) + ": unknown escape \\" +
                               sanitize_utf8(std::string(1, e)) + " (the escapes are \\n, \\t and \\\\)");
  }
  return out;
}

int tokenize_file(const std::string& tokenizer_json, const std::string& input_txt, const std::string& output_jsonl,
                  std::ostream& log, bool overwrite) {
  try {
    struct stat st {};
    if (!overwrite && ::stat(output_jsonl.c_str(), &st) == 0)
      throw std::runtime_error(output_jsonl + ": the output exists; refusing to overwrite it (pass --overwrite)");
    const Tokenizer tok = Tokenizer::from_file(tokenizer_json);
    std::ifstream in(input_txt, std::ios::binary);
    if (!in) throw std::runtime_error(input_txt + ": cannot open the input: " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw std::runtime_error(input_txt + ": cannot read the input");
    const std::string all = ss.str();
    std::string out;
    std::size_t texts = 0, n_ids = 0, pos = 0, line_no = 0;
    while (pos < all.size()) {
      std::size_t nl = all.find('\n', pos);
      if (nl == std::string::npos) nl = all.size();
      ++line_no;
      std::string text;
      try {
        text = unescape_text_line(std::string_view(all).substr(pos, nl - pos), line_no);
      } catch (const std::exception& e) {
        throw std::runtime_error(input_txt + ": " + e.what());
      }
      const std::vector<std::int64_t> ids = tok.encode(text, true);
      out += "{\"ids\": [";
      for (std::size_t k = 0; k < ids.size(); ++k) {
        if (k) out += ", ";
        out += std::to_string(ids[k]);
      }
      out += "]}\n";
      ++texts;
      n_ids += ids.size();
      pos = nl + 1;
    }
    write_file_atomic(output_jsonl, out);
    log << "tokenize: " << texts << " texts, " << n_ids << " ids -> " << output_jsonl << "\n";
    return 0;
  } catch (const std::exception& e) {
    log << "tokenize: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace janus
