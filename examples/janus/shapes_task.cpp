// shapes_task.cpp - task "shapes" (see shapes_task.hpp).
#include "shapes_task.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>
#include <png.h>
#include <sys/stat.h>

#include "run_dir.hpp"

namespace shapes {

namespace {

using gcpo::status_code;

// ---- names ------------------------------------------------------------------------------------

constexpr const char* kShapeNames[kNumShapes] = {"square", "circle", "triangle"};
constexpr const char* kShapePlurals[kNumShapes] = {"squares", "circles", "triangles"};
constexpr const char* kColorNames[kNumColors] = {"red", "orange", "yellow", "green", "blue", "purple"};
constexpr const char* kTagNames[kNumTags] = {"single_object", "two_object", "counting",
                                             "colors",        "position",   "color_attr"};
constexpr const char* kRelationNames[kNumRelations] = {"left of", "right of", "above", "below"};
constexpr const char* kNumberWords[] = {"zero", "one", "two", "three", "four"};
constexpr int kMinCount = 2, kMaxCount = 4;  // counting prompts, as GenEval

template <class E, int N>
std::optional<E> from_name(const char* const (&names)[N], std::string_view text) noexcept {
  for (int i = 0; i < N; ++i)
    if (text == names[i]) return static_cast<E>(i);
  return std::nullopt;
}

template <class E>
int idx(E e) noexcept {
  return static_cast<int>(e);
}

// ---- palette ----------------------------------------------------------------------------------

constexpr Rgb kPalette[kCodebookSize] = {
    {245, 245, 240}, {226, 226, 220}, {206, 206, 200}, {186, 186, 180},  // background
    {240, 110, 110}, {215, 35, 35},   {145, 20, 20},                     // red
    {255, 175, 85},  {240, 130, 20},  {180, 90, 10},                     // orange
    {250, 228, 100}, {230, 195, 0},   {170, 140, 0},                     // yellow
    {115, 205, 115}, {40, 160, 55},   {20, 100, 35},                     // green
    {105, 150, 240}, {35, 90, 215},   {20, 50, 140},                     // blue
    {185, 125, 225}, {130, 55, 180},  {80, 25, 120},                     // purple
};

// ---- random numbers -----------------------------------------------------------------------------

std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

using Rng = std::mt19937_64;

/// Uniform integer in [0, n), n >= 1, by rejection (no modulo bias, no implementation-defined
/// distribution).
std::uint64_t below(Rng& rng, std::uint64_t n) {
  const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);
  for (;;) {
    const std::uint64_t x = rng();
    if (x < limit) return x % n;
  }
}
int below(Rng& rng, int n) { return static_cast<int>(below(rng, static_cast<std::uint64_t>(n))); }
/// Uniform double in [0, 1) with 53 random bits.
double unit(Rng& rng) { return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0); }

template <class T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(rng, static_cast<std::uint64_t>(i))]);
}

// ---- small JSON writer in Python json.dumps style ----------------------------------------------

std::string json_string(const std::string& s) { return nlohmann::json(s).dump(); }

}  // namespace

// =============================================================================================
// Names
// =============================================================================================

const char* name(Shape s) noexcept { return idx(s) < kNumShapes ? kShapeNames[idx(s)] : "?"; }
const char* name(Color c) noexcept { return idx(c) < kNumColors ? kColorNames[idx(c)] : "?"; }
const char* name(Tag t) noexcept { return idx(t) < kNumTags ? kTagNames[idx(t)] : "?"; }
const char* name(Relation r) noexcept { return idx(r) < kNumRelations ? kRelationNames[idx(r)] : "?"; }
const char* plural(Shape s) noexcept { return idx(s) < kNumShapes ? kShapePlurals[idx(s)] : "?"; }
const char* name(Check c) noexcept {
  switch (c) {
    case Check::not_asked: return "not asked";
    case Check::passed: return "passed";
    case Check::failed: return "failed";
    case Check::skipped: return "skipped";
  }
  return "?";
}

std::optional<Shape> shape_from_name(std::string_view t) noexcept { return from_name<Shape>(kShapeNames, t); }
std::optional<Color> color_from_name(std::string_view t) noexcept { return from_name<Color>(kColorNames, t); }
std::optional<Tag> tag_from_name(std::string_view t) noexcept { return from_name<Tag>(kTagNames, t); }
std::optional<Relation> relation_from_name(std::string_view t) noexcept {
  return from_name<Relation>(kRelationNames, t);
}

// =============================================================================================
// Codebook
// =============================================================================================

std::optional<Color> token_color(int token) noexcept {
  if (is_background(token)) return std::nullopt;
  return static_cast<Color>((token - kNumBackground) / kShadesPerColor);
}

Rgb token_rgb(int token) noexcept {
  if (token < 0 || token >= kCodebookSize) return Rgb{255, 0, 255};
  return kPalette[token];
}

status validate(const TaskConfig& c) {
  if (c.height < 4 || c.height > 128)
    return status::error(status_code::invalid_argument, "`config.height` (%d) must be in [4, 128]", c.height);
  if (c.width < 4 || c.width > 128)
    return status::error(status_code::invalid_argument, "`config.width` (%d) must be in [4, 128]", c.width);
  if (c.max_object_extent < 0)
    return status::error(status_code::invalid_argument, "`config.max_object_extent` (%d) must be >= 0",
                         c.max_object_extent);
  return gcpo::ok();
}

// =============================================================================================
// Shapes
// =============================================================================================

int Mask::area() const {
  int a = 0;
  for (auto c : cells) a += c != 0;
  return a;
}

Mask shape_mask(Shape shape, int size) {
  Mask m;
  if (size < 1) return m;
  switch (shape) {
    case Shape::square:
      m.height = m.width = size;
      m.cells.assign(static_cast<std::size_t>(size) * size, 1);
      break;
    case Shape::circle: {
      m.height = m.width = size;
      m.cells.assign(static_cast<std::size_t>(size) * size, 0);
      // Cell (y, x) has its centre at (x + .5, y + .5); the circle's centre is (d/2, d/2), its
      // radius d/2. Compare squared distances times 4 to stay in integers.
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x) {
          const int dy = 2 * y + 1 - size, dx = 2 * x + 1 - size;
          if (dx * dx + dy * dy <= size * size) m.cells[static_cast<std::size_t>(y) * size + x] = 1;
        }
      break;
    }
    case Shape::triangle: {
      m.height = size;
      m.width = 2 * size - 1;
      m.cells.assign(static_cast<std::size_t>(m.height) * m.width, 0);
      for (int y = 0; y < size; ++y)
        for (int x = size - 1 - y; x <= size - 1 + y; ++x) m.cells[static_cast<std::size_t>(y) * m.width + x] = 1;
      break;
    }
  }
  return m;
}

namespace {
int effective_extent(const TaskConfig& c) {
  return c.max_object_extent > 0 ? c.max_object_extent : std::max(4, std::min(c.height, c.width) * 3 / 8);
}
}  // namespace

std::vector<int> drawable_sizes(Shape shape, const TaskConfig& config) {
  static const std::vector<int> squares = {2, 3, 4, 5};
  static const std::vector<int> circles = {4, 5, 7, 8};
  static const std::vector<int> triangles = {2, 3, 4};
  const std::vector<int>& all = shape == Shape::square ? squares : shape == Shape::circle ? circles : triangles;
  const int extent = std::min({effective_extent(config), config.height, config.width});
  std::vector<int> out;
  for (int s : all) {
    const Mask m = shape_mask(shape, s);
    if (m.height <= extent && m.width <= extent) out.push_back(s);
  }
  return out;
}

void draw_shape(Grid& grid, Shape shape, int size, int top, int left, int token) {
  const Mask m = shape_mask(shape, size);
  for (int y = 0; y < m.height; ++y)
    for (int x = 0; x < m.width; ++x) {
      const int gy = top + y, gx = left + x;
      if (m.at(y, x) && gy >= 0 && gy < grid.height && gx >= 0 && gx < grid.width) grid.at(gy, gx) = token;
    }
}

// =============================================================================================
// Metadata and prompts
// =============================================================================================

status validate(const Metadata& meta) {
  for (std::size_t i = 0; i < meta.include.size(); ++i) {
    const Include& c = meta.include[i];
    if (idx(c.cls) >= kNumShapes)
      return status::error(status_code::invalid_argument, "`include[%zu].class` is not a known class", i);
    if (c.count < 1)
      return status::error(status_code::invalid_argument, "`include[%zu].count` (%d) must be >= 1", i, c.count);
    if (c.position && (c.position->target < 0 || static_cast<std::size_t>(c.position->target) >= i))
      return status::error(status_code::invalid_argument,
                           "`include[%zu].position[1]` (%d) must index an earlier include clause (0..%zu)", i,
                           c.position->target, i == 0 ? std::size_t{0} : i - 1);
  }
  for (std::size_t i = 0; i < meta.exclude.size(); ++i)
    if (meta.exclude[i].count < 1)
      return status::error(status_code::invalid_argument, "`exclude[%zu].count` (%d) must be >= 1", i,
                           meta.exclude[i].count);
  if (idx(meta.tag) >= kNumTags) return status::error(status_code::invalid_argument, "`tag` is not a known tag");
  // The clauses each tag's records have (GenEval's generator): a record that asks for nothing
  // would score every image correct.
  const char* tag = name(meta.tag);
  const std::size_t want = meta.tag == Tag::two_object || meta.tag == Tag::position || meta.tag == Tag::color_attr ? 2 : 1;
  if (meta.include.empty())
    return status::error(status_code::invalid_argument, "`include` is empty: a `%s` record needs %zu include clause%s",
                         tag, want, want == 1 ? "" : "s");
  if (meta.include.size() != want)
    return status::error(status_code::invalid_argument, "`include` has %zu clauses: a `%s` record needs %zu",
                         meta.include.size(), tag, want);
  if (meta.tag == Tag::colors && !meta.include[0].color)
    return status::error(status_code::invalid_argument, "`include[0].color` is missing: a `colors` record needs it");
  if (meta.tag == Tag::color_attr)
    for (std::size_t i = 0; i < 2; ++i)
      if (!meta.include[i].color)
        return status::error(status_code::invalid_argument,
                             "`include[%zu].color` is missing: a `color_attr` record needs both colours", i);
  if (meta.tag == Tag::position && !meta.include[1].position)
    return status::error(status_code::invalid_argument,
                         "`include[1].position` is missing: a `position` record needs it");
  return gcpo::ok();
}

namespace {

std::string with_article(const std::string& word) {
  const char c = word.empty() ? 'x' : word[0];
  const bool vowel = c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
  return (vowel ? "an " : "a ") + word;
}

Include clause(Shape s, int count = 1) {
  Include c;
  c.cls = s;
  c.count = count;
  return c;
}

}  // namespace

std::string prompt_text(const Metadata& m) {
  const auto& in = m.include;
  switch (m.tag) {
    case Tag::single_object:
      if (in.size() == 1) return "a photo of " + with_article(name(in[0].cls));
      break;
    case Tag::two_object:
      if (in.size() == 2)
        return "a photo of " + with_article(name(in[0].cls)) + " and " + with_article(name(in[1].cls));
      break;
    case Tag::counting:
      if (in.size() == 1 && in[0].count >= 1 && in[0].count <= kMaxCount) {
        if (in[0].count == 1) return "a photo of " + with_article(name(in[0].cls));
        return std::string("a photo of ") + kNumberWords[in[0].count] + " " + plural(in[0].cls);
      }
      break;
    case Tag::colors:
      if (in.size() == 1 && in[0].color)
        return "a photo of " + with_article(name(*in[0].color)) + " " + name(in[0].cls);
      break;
    case Tag::position:
      if (in.size() == 2 && in[1].position)
        return "a photo of " + with_article(name(in[1].cls)) + " " + name(in[1].position->relation) + " " +
               with_article(name(in[0].cls));
      break;
    case Tag::color_attr:
      if (in.size() == 2 && in[0].color && in[1].color)
        return "a photo of " + with_article(name(*in[0].color)) + " " + name(in[0].cls) + " and " +
               with_article(name(*in[1].color)) + " " + name(in[1].cls);
      break;
  }
  return "";
}

Metadata make_single_object(Shape a) {
  Metadata m;
  m.tag = Tag::single_object;
  m.include = {clause(a)};
  m.prompt = prompt_text(m);
  return m;
}

Metadata make_two_object(Shape a, Shape b) {
  Metadata m;
  m.tag = Tag::two_object;
  m.include = {clause(a), clause(b)};
  m.prompt = prompt_text(m);
  return m;
}

Metadata make_counting(Shape a, int count) {
  Metadata m;
  m.tag = Tag::counting;
  m.include = {clause(a, count)};
  m.exclude = {Exclude{a, count + 1}};
  m.prompt = prompt_text(m);
  return m;
}

Metadata make_colors(Shape a, Color color) {
  Metadata m;
  m.tag = Tag::colors;
  m.include = {clause(a)};
  m.include[0].color = color;
  m.prompt = prompt_text(m);
  return m;
}

Metadata make_position(Shape a, Relation relation, Shape b) {
  Metadata m;
  m.tag = Tag::position;
  m.include = {clause(b), clause(a)};
  m.include[1].position = Position{relation, 0};
  m.prompt = prompt_text(m);
  return m;
}

Metadata make_color_attr(Shape a, Color color_a, Shape b, Color color_b) {
  Metadata m;
  m.tag = Tag::color_attr;
  m.include = {clause(a), clause(b)};
  m.include[0].color = color_a;
  m.include[1].color = color_b;
  m.prompt = prompt_text(m);
  return m;
}

// ---- JSONL ------------------------------------------------------------------------------------

std::string to_json_line(const Metadata& m) {
  std::string s = "{\"tag\": " + json_string(name(m.tag)) + ", \"include\": [";
  for (std::size_t i = 0; i < m.include.size(); ++i) {
    const Include& c = m.include[i];
    if (i) s += ", ";
    s += "{\"class\": " + json_string(name(c.cls)) + ", \"count\": " + std::to_string(c.count);
    if (c.color) s += ", \"color\": " + json_string(name(*c.color));
    if (c.position)
      s += ", \"position\": [" + json_string(name(c.position->relation)) + ", " +
           std::to_string(c.position->target) + "]";
    s += "}";
  }
  s += "]";
  if (!m.exclude.empty()) {
    s += ", \"exclude\": [";
    for (std::size_t i = 0; i < m.exclude.size(); ++i) {
      if (i) s += ", ";
      s += "{\"class\": " + json_string(name(m.exclude[i].cls)) +
           ", \"count\": " + std::to_string(m.exclude[i].count) + "}";
    }
    s += "]";
  }
  s += ", \"prompt\": " + json_string(m.prompt) + "}";
  return s;
}

namespace {

status parse_class(const nlohmann::json& j, const std::string& where, Shape& out) {
  if (!j.is_string()) return status::error(status_code::invalid_argument, "`%s` must be a string", where.c_str());
  const auto s = shape_from_name(j.get_ref<const std::string&>());
  if (!s)
    return status::error(status_code::invalid_argument,
                         "`%s`: unknown class \"%s\" (the shapes task knows square, circle, triangle)", where.c_str(),
                         j.get_ref<const std::string&>().c_str());
  out = *s;
  return gcpo::ok();
}

status parse_count(const nlohmann::json& j, const std::string& where, int& out) {
  if (!j.is_number_integer())
    return status::error(status_code::invalid_argument, "`%s` must be an integer", where.c_str());
  const auto v = j.get<long long>();
  if (v < 1 || v > 1000)
    return status::error(status_code::invalid_argument, "`%s` (%lld) must be in [1, 1000]", where.c_str(), v);
  out = static_cast<int>(v);
  return gcpo::ok();
}

status parse_record(const nlohmann::json& j, Metadata& m) {
  if (!j.is_object()) return status::error(status_code::invalid_argument, "the record must be a JSON object");
  if (!j.contains("tag") || !j["tag"].is_string())
    return status::error(status_code::invalid_argument, "`tag` is missing or not a string");
  const auto tag = tag_from_name(j["tag"].get_ref<const std::string&>());
  if (!tag)
    return status::error(status_code::invalid_argument, "`tag`: unknown tag \"%s\"",
                         j["tag"].get_ref<const std::string&>().c_str());
  m.tag = *tag;
  if (!j.contains("include") || !j["include"].is_array())
    return status::error(status_code::invalid_argument, "`include` is missing or not an array");
  for (std::size_t i = 0; i < j["include"].size(); ++i) {
    const auto& c = j["include"][i];
    const std::string at = "include[" + std::to_string(i) + "]";
    if (!c.is_object()) return status::error(status_code::invalid_argument, "`%s` must be an object", at.c_str());
    Include in;
    if (!c.contains("class")) return status::error(status_code::invalid_argument, "`%s.class` is missing", at.c_str());
    GCPO_TRY(parse_class(c["class"], at + ".class", in.cls));
    if (!c.contains("count")) return status::error(status_code::invalid_argument, "`%s.count` is missing", at.c_str());
    GCPO_TRY(parse_count(c["count"], at + ".count", in.count));
    if (c.contains("color")) {
      if (!c["color"].is_string())
        return status::error(status_code::invalid_argument, "`%s.color` must be a string", at.c_str());
      const auto col = color_from_name(c["color"].get_ref<const std::string&>());
      if (!col)
        return status::error(status_code::invalid_argument,
                             "`%s.color`: unknown colour \"%s\" (the shapes task knows red, orange, yellow, green, "
                             "blue, purple)",
                             at.c_str(), c["color"].get_ref<const std::string&>().c_str());
      in.color = *col;
    }
    if (c.contains("position")) {
      const auto& p = c["position"];
      if (!p.is_array() || p.size() != 2 || !p[0].is_string() || !p[1].is_number_integer())
        return status::error(status_code::invalid_argument, "`%s.position` must be [relation, index]", at.c_str());
      const auto rel = relation_from_name(p[0].get_ref<const std::string&>());
      if (!rel)
        return status::error(status_code::invalid_argument,
                             "`%s.position[0]`: unknown relation \"%s\" (left of, right of, above, below)", at.c_str(),
                             p[0].get_ref<const std::string&>().c_str());
      const auto target = p[1].get<long long>();
      if (target < 0 || target >= static_cast<long long>(i))
        return status::error(status_code::invalid_argument,
                             "`%s.position[1]` (%lld) must index an earlier include clause", at.c_str(), target);
      in.position = Position{*rel, static_cast<int>(target)};
    }
    m.include.push_back(in);
  }
  if (j.contains("exclude") && !j["exclude"].is_null()) {
    if (!j["exclude"].is_array()) return status::error(status_code::invalid_argument, "`exclude` must be an array");
    for (std::size_t i = 0; i < j["exclude"].size(); ++i) {
      const auto& c = j["exclude"][i];
      const std::string at = "exclude[" + std::to_string(i) + "]";
      if (!c.is_object()) return status::error(status_code::invalid_argument, "`%s` must be an object", at.c_str());
      Exclude ex;
      if (!c.contains("class")) return status::error(status_code::invalid_argument, "`%s.class` is missing", at.c_str());
      GCPO_TRY(parse_class(c["class"], at + ".class", ex.cls));
      if (!c.contains("count")) return status::error(status_code::invalid_argument, "`%s.count` is missing", at.c_str());
      GCPO_TRY(parse_count(c["count"], at + ".count", ex.count));
      m.exclude.push_back(ex);
    }
  }
  if (!j.contains("prompt") || !j["prompt"].is_string())
    return status::error(status_code::invalid_argument, "`prompt` is missing or not a string");
  m.prompt = j["prompt"].get<std::string>();
  return gcpo::ok();
}

}  // namespace

status from_json_line(std::string_view line, Metadata& out) {
  nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return status::error(status_code::invalid_argument, "not valid JSON");
  Metadata m;
  GCPO_TRY(parse_record(j, m));
  out = std::move(m);
  return gcpo::ok();
}

status write_jsonl(const std::string& path, const std::vector<Metadata>& records) {
  std::string text;
  for (const auto& r : records) text += to_json_line(r) + '\n';
  try {
    janus::write_file_atomic(path, text);
  } catch (const std::exception& e) {
    return status::error(status_code::invalid_argument, "cannot write \"%s\": %s", path.c_str(), e.what());
  }
  return gcpo::ok();
}

status read_jsonl(const std::string& path, std::vector<Metadata>& out) {
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0)
    return status::error(status_code::invalid_argument, "cannot open \"%s\" for reading: %s", path.c_str(),
                         std::strerror(errno));
  if (S_ISDIR(sb.st_mode))
    return status::error(status_code::invalid_argument, "\"%s\" is a directory, not a JSONL file", path.c_str());
  std::ifstream f(path, std::ios::binary);
  if (!f) return status::error(status_code::invalid_argument, "cannot open \"%s\" for reading", path.c_str());
  std::vector<Metadata> records;
  std::string line;
  long lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Metadata m;
    status s = from_json_line(line, m);
    if (s.ok()) s = validate(m);
    if (!s.ok()) return status::error(s.code(), "%s:%ld: %s", path.c_str(), lineno, s.message());
    records.push_back(std::move(m));
  }
  if (f.bad()) return status::error(status_code::invalid_argument, "cannot read \"%s\"", path.c_str());
  out.insert(out.end(), std::make_move_iterator(records.begin()), std::make_move_iterator(records.end()));
  return gcpo::ok();
}

// =============================================================================================
// Detector
// =============================================================================================

std::optional<Shape> classify_shape(const Box& box, int area, int corners, const DetectorOptions& o) {
  const int w = box.width(), h = box.height();
  if (w <= 0 || h <= 0 || area <= 0) return std::nullopt;
  const double aspect = static_cast<double>(std::max(w, h)) / std::min(w, h);
  if (aspect > o.max_aspect) return std::nullopt;
  const double fill = static_cast<double>(area) / (static_cast<double>(w) * h);
  if (fill >= o.square_min_fill) return Shape::square;
  if (fill >= o.circle_min_fill) {
    if (corners == 0) return Shape::circle;
    return std::nullopt;
  }
  if (fill >= o.triangle_min_fill) {
    // 1 top-left, 2 top-right, 4 bottom-left, 8 bottom-right.
    const bool base = corners == (1 | 2) || corners == (4 | 8) || corners == (1 | 4) || corners == (2 | 8);
    int k = 0;
    for (int b = 0; b < 4; ++b) k += (corners >> b) & 1;
    if (base || k == 3) return Shape::triangle;
  }
  return std::nullopt;
}

Detections detect(const Grid& grid, const DetectorOptions& o) {
  Detections d;
  const int H = grid.height, W = grid.width;
  if (H <= 0 || W <= 0 || grid.tokens.size() != static_cast<std::size_t>(H) * W) return d;
  std::vector<int> label(static_cast<std::size_t>(H) * W, -1);
  std::vector<int> stack;
  std::vector<int> cells;
  int next = 0;
  for (int start = 0; start < H * W; ++start) {
    if (label[start] >= 0 || is_background(grid.tokens[start])) continue;
    // Flood fill, 4-connectivity.
    cells.clear();
    stack.assign(1, start);
    label[start] = next;
    while (!stack.empty()) {
      const int c = stack.back();
      stack.pop_back();
      cells.push_back(c);
      const int y = c / W, x = c % W;
      const int nb[4][2] = {{y - 1, x}, {y + 1, x}, {y, x - 1}, {y, x + 1}};
      for (const auto& n : nb) {
        if (n[0] < 0 || n[0] >= H || n[1] < 0 || n[1] >= W) continue;
        const int k = n[0] * W + n[1];
        if (label[k] < 0 && !is_background(grid.tokens[k])) {
          label[k] = next;
          stack.push_back(k);
        }
      }
    }
    ++next;
    if (static_cast<int>(cells.size()) < o.min_area) {
      ++d.small_components;
      continue;
    }
    Component comp;
    comp.area = static_cast<int>(cells.size());
    comp.first_cell = start;
    comp.box = Box{W, H, 0, 0};
    double sx = 0, sy = 0;
    for (int c : cells) {
      const int y = c / W, x = c % W;
      comp.box.x0 = std::min(comp.box.x0, x);
      comp.box.y0 = std::min(comp.box.y0, y);
      comp.box.x1 = std::max(comp.box.x1, x + 1);
      comp.box.y1 = std::max(comp.box.y1, y + 1);
      sx += x + 0.5;
      sy += y + 0.5;
      comp.color_votes[idx(*token_color(grid.tokens[c]))] += 1;
    }
    comp.cx = sx / comp.area;
    comp.cy = sy / comp.area;
    comp.fill = static_cast<double>(comp.area) / (static_cast<double>(comp.box.width()) * comp.box.height());
    const int lab = label[start];
    auto covers = [&](int y, int x) { return label[static_cast<std::size_t>(y) * W + x] == lab; };
    comp.corners = (covers(comp.box.y0, comp.box.x0) ? 1 : 0) | (covers(comp.box.y0, comp.box.x1 - 1) ? 2 : 0) |
                   (covers(comp.box.y1 - 1, comp.box.x0) ? 4 : 0) | (covers(comp.box.y1 - 1, comp.box.x1 - 1) ? 8 : 0);
    int best = 0;
    for (int c = 1; c < kNumColors; ++c)
      if (comp.color_votes[c] > comp.color_votes[best]) best = c;
    comp.color = static_cast<Color>(best);
    comp.shape = classify_shape(comp.box, comp.area, comp.corners, o);
    d.components.push_back(comp);
  }
  for (int i = 0; i < static_cast<int>(d.components.size()); ++i)
    if (d.components[i].shape) d.by_class[idx(*d.components[i].shape)].push_back(i);
  for (auto& list : d.by_class) {
    std::sort(list.begin(), list.end(), [&](int a, int b) {
      const Component& A = d.components[a];
      const Component& B = d.components[b];
      if (A.area != B.area) return A.area > B.area;
      if (A.box.y0 != B.box.y0) return A.box.y0 < B.box.y0;
      if (A.box.x0 != B.box.x0) return A.box.x0 < B.box.x0;
      return A.first_cell < B.first_cell;
    });
    if (static_cast<int>(list.size()) > std::max(0, o.max_per_class)) list.resize(std::max(0, o.max_per_class));
  }
  return d;
}

std::array<bool, kNumRelations> relations(const Box& a, const Box& b) noexcept {
  std::array<bool, kNumRelations> r{};
  const double cax = 0.5 * (a.x0 + a.x1), cay = 0.5 * (a.y0 + a.y1);
  const double cbx = 0.5 * (b.x0 + b.x1), cby = 0.5 * (b.y0 + b.y1);
  const double ox = cax - cbx, oy = cay - cby;
  auto sign = [](double v) { return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); };
  const double rx = std::max(std::abs(ox) - 0.1 * (a.width() + b.width()), 0.0) * sign(ox);
  const double ry = std::max(std::abs(oy) - 0.1 * (a.height() + b.height()), 0.0) * sign(oy);
  if (std::abs(rx) < 1e-3 && std::abs(ry) < 1e-3) return r;
  const double norm = std::sqrt(ox * ox + oy * oy);
  const double dx = rx / norm, dy = ry / norm;
  r[idx(Relation::left_of)] = dx < -0.5;
  r[idx(Relation::right_of)] = dx > 0.5;
  r[idx(Relation::above)] = dy < -0.5;
  r[idx(Relation::below)] = dy > 0.5;
  return r;
}

bool in_relation(const Box& a, Relation rel, const Box& b) noexcept { return relations(a, b)[idx(rel)]; }

// =============================================================================================
// Scoring
// =============================================================================================

namespace {

std::string relations_text(const std::array<bool, kNumRelations>& r) {
  std::string s;
  for (int i = 0; i < kNumRelations; ++i)
    if (r[i]) s += (s.empty() ? "" : " and ") + std::string(kRelationNames[i]);
  return s.empty() ? "no relation to the" : s;
}

// The first n detections of class s (indices into components).
std::vector<int> first_n(const Detections& d, Shape s, int n) {
  const auto& all = d.by_class[idx(s)];
  return std::vector<int>(all.begin(), all.begin() + std::min<std::size_t>(all.size(), std::max(0, n)));
}

int count_color(const Detections& d, const std::vector<int>& objs, Color c) {
  int n = 0;
  for (int i : objs) n += d.components[i].color == c;
  return n;
}

// Every object of `objs` stands in `rel` to every object of `targets`. On failure, `what`
// receives the relations found for the failing pair.
bool all_in_relation(const Detections& d, const std::vector<int>& objs, Relation rel, const std::vector<int>& targets,
                     std::string& what) {
  for (int a : objs)
    for (int b : targets) {
      const auto r = relations(d.components[a].box, d.components[b].box);
      if (!r[idx(rel)]) {
        what = relations_text(r);
        return false;
      }
    }
  return true;
}

}  // namespace

ScoreResult score(const Detections& d, const Metadata& meta, const ScoreOptions& options) {
  ScoreResult res;
  {
    const status v = validate(meta);
    if (!v.ok()) {
      res.reason = std::string("invalid metadata: ") + v.message();
      return res;
    }
  }
  // ---- binary (GenEval evaluate) ----
  bool correct = true;
  std::vector<std::string> reasons;
  std::vector<std::optional<std::vector<int>>> groups;
  for (const Include& req : meta.include) {
    ClauseResult cr;
    cr.cls = req.cls;
    cr.count = req.count;
    cr.found = d.count(req.cls);
    bool matched = true;
    const std::vector<int> objs = first_n(d, req.cls, req.count);
    if (static_cast<int>(objs.size()) < req.count) {
      correct = matched = false;
      cr.count_check = Check::failed;
      if (req.color) cr.color_check = Check::skipped;
      if (req.position) cr.position_check = Check::skipped;
      reasons.push_back(std::string("expected ") + name(req.cls) + ">=" + std::to_string(req.count) + ", found " +
                        std::to_string(objs.size()));
    } else {
      cr.count_check = Check::passed;
      if (req.color) {
        cr.with_color = count_color(d, objs, *req.color);
        if (cr.with_color < req.count) {
          correct = matched = false;
          cr.color_check = Check::failed;
          std::string found;
          for (int c = 0; c < kNumColors; ++c) {
            const int k = count_color(d, objs, static_cast<Color>(c));
            if (k) found += (found.empty() ? "" : ", ") + std::to_string(k) + " " + kColorNames[c];
          }
          reasons.push_back(std::string("expected ") + name(*req.color) + " " + name(req.cls) +
                            ">=" + std::to_string(req.count) + ", found " + std::to_string(cr.with_color) + " " +
                            name(*req.color) + "; and " + found);
        } else {
          cr.color_check = Check::passed;
        }
      }
      if (req.position) {
        if (!matched) {
          cr.position_check = Check::skipped;
        } else if (!groups[req.position->target]) {
          correct = matched = false;
          cr.position_check = Check::failed;
          reasons.push_back(std::string("no target for ") + name(req.cls) + " to be " + name(req.position->relation));
        } else {
          std::string what;
          if (all_in_relation(d, objs, req.position->relation, *groups[req.position->target], what)) {
            cr.position_check = Check::passed;
          } else {
            correct = matched = false;
            cr.position_check = Check::failed;
            reasons.push_back(std::string("expected ") + name(req.cls) + " " + name(req.position->relation) +
                              " target, found " + what + " target");
          }
        }
      }
    }
    cr.matched = matched;
    groups.push_back(matched ? std::optional<std::vector<int>>(objs) : std::nullopt);
    res.include.push_back(cr);
  }
  bool excludes_ok = true;
  for (const Exclude& ex : meta.exclude) {
    ExcludeResult er;
    er.cls = ex.cls;
    er.count = ex.count;
    er.found = d.count(ex.cls);
    er.passed = er.found < ex.count;
    if (!er.passed) {
      correct = excludes_ok = false;
      reasons.push_back(std::string("expected ") + name(ex.cls) + "<" + std::to_string(ex.count) + ", found " +
                        std::to_string(er.found));
    }
    res.exclude.push_back(er);
  }
  res.correct = correct;
  for (std::size_t i = 0; i < reasons.size(); ++i) res.reason += (i ? "\n" : "") + reasons[i];

  // ---- strict and partial (reward-server evaluate_reward) ----
  bool strict = true;
  std::vector<double> terms;
  std::vector<std::optional<std::vector<int>>> sgroups;
  for (const Include& req : meta.include) {
    bool matched = true;
    const std::vector<int> objs = first_n(d, req.cls, d.count(req.cls));  // all detections of the class
    const int found = static_cast<int>(objs.size());
    terms.push_back(1.0 - std::abs(req.count - found) / static_cast<double>(req.count));
    if (found != req.count) {
      strict = matched = false;
      if (req.color || req.position) terms.push_back(0.0);
    } else {
      if (req.color) {
        const int n = count_color(d, objs, *req.color);
        terms.push_back(1.0 - std::abs(req.count - n) / static_cast<double>(req.count));
        if (n != req.count) strict = matched = false;
      }
      if (req.position && matched) {
        if (!sgroups[req.position->target]) {
          strict = matched = false;
          terms.push_back(0.0);
        } else {
          std::string what;
          if (all_in_relation(d, objs, req.position->relation, *sgroups[req.position->target], what)) {
            terms.push_back(1.0);
          } else {
            strict = matched = false;
            terms.push_back(0.0);
            if (options.partial_as_reward_server) terms.push_back(1.0);
          }
        }
      }
    }
    sgroups.push_back(matched ? std::optional<std::vector<int>>(objs) : std::nullopt);
  }
  res.strict_correct = strict && excludes_ok;
  int asked = 0;
  for (const Include& req : meta.include) asked += req.count;
  res.clean_correct = res.correct && static_cast<int>(d.components.size()) == asked && d.small_components == 0;
  double sum = 0;
  for (double t : terms) sum += t;
  res.partial = terms.empty() ? 0.0 : sum / static_cast<double>(terms.size());

  switch (options.mode) {
    case ScoreMode::binary: res.reward = res.correct ? 1.0 : 0.0; break;
    case ScoreMode::strict: res.reward = res.strict_correct ? 1.0 : 0.0; break;
    case ScoreMode::partial: res.reward = res.partial; break;
    case ScoreMode::clean: res.reward = res.clean_correct ? 1.0 : 0.0; break;
  }
  return res;
}

ScoreResult score(const Grid& grid, const Metadata& meta, const ScoreOptions& options) {
  return score(detect(grid, options.detector), meta, options);
}

// =============================================================================================
// Prompt space, split, draws
// =============================================================================================

std::vector<Metadata> enumerate_prompts() {
  std::vector<Metadata> out;
  constexpr Shape S[kNumShapes] = {Shape::square, Shape::circle, Shape::triangle};
  for (Shape a : S) out.push_back(make_single_object(a));
  for (Shape a : S)
    for (Shape b : S)
      if (a != b) out.push_back(make_two_object(a, b));
  for (Shape a : S)
    for (int n = kMinCount; n <= kMaxCount; ++n) out.push_back(make_counting(a, n));
  for (Shape a : S)
    for (int c = 0; c < kNumColors; ++c) out.push_back(make_colors(a, static_cast<Color>(c)));
  for (Shape a : S)
    for (Shape b : S)
      if (a != b)
        for (int r = 0; r < kNumRelations; ++r) out.push_back(make_position(a, static_cast<Relation>(r), b));
  for (Shape a : S)
    for (Shape b : S)
      if (a != b)
        for (int ca = 0; ca < kNumColors; ++ca)
          for (int cb = 0; cb < kNumColors; ++cb)
            if (ca != cb) out.push_back(make_color_attr(a, static_cast<Color>(ca), b, static_cast<Color>(cb)));
  return out;
}

namespace {
constexpr std::uint64_t kFeasibilitySeed = 0x5eed5eed5eedULL;
}

bool is_feasible(const Metadata& meta, const TaskConfig& config) {
  Grid g;
  return render(meta, config, kFeasibilitySeed, g).ok();
}

std::vector<Metadata> task_prompts(const TaskConfig& config) {
  std::vector<Metadata> out;
  if (!validate(config).ok()) return out;
  for (auto& m : enumerate_prompts())
    if (is_feasible(m, config)) out.push_back(std::move(m));
  return out;
}

status split_prompts(const TaskConfig& config, const SplitOptions& options, PromptSplit& out) {
  GCPO_TRY(validate(config));
  if (!(options.heldout_fraction >= 0.0 && options.heldout_fraction < 1.0))
    return status::error(status_code::invalid_argument, "`options.heldout_fraction` (%g) must be in [0, 1)",
                         options.heldout_fraction);
  const std::vector<Metadata> all = task_prompts(config);
  std::vector<char> held(all.size(), 0);
  for (int t = 0; t < kNumTags; ++t) {
    std::vector<std::size_t> members;
    for (std::size_t i = 0; i < all.size(); ++i)
      if (idx(all[i].tag) == t) members.push_back(i);
    const std::size_t n = members.size();
    if (n < 2 || options.heldout_fraction <= 0.0) continue;
    Rng rng(derive_seed(options.seed, 0x7a9000ULL + static_cast<std::uint64_t>(t)));
    shuffle(members, rng);
    std::size_t k = static_cast<std::size_t>(std::llround(options.heldout_fraction * static_cast<double>(n)));
    k = std::min(std::max<std::size_t>(k, 1), n - 1);
    for (std::size_t i = 0; i < k; ++i) held[members[i]] = 1;
  }
  PromptSplit split;
  for (std::size_t i = 0; i < all.size(); ++i) (held[i] ? split.heldout : split.train).push_back(all[i]);
  out = std::move(split);
  return gcpo::ok();
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) noexcept {
  return splitmix64(splitmix64(seed) ^ splitmix64(index ^ 0x6a09e667f3bcc909ULL));
}

status pick_prompt(const std::vector<Metadata>& pool, std::uint64_t seed, std::uint64_t index, std::size_t& picked,
                   const TagWeights& weights) {
  if (pool.empty()) return status::error(status_code::invalid_argument, "`pool` is empty");
  std::array<std::vector<std::size_t>, kNumTags> by_tag;
  for (std::size_t i = 0; i < pool.size(); ++i) by_tag[idx(pool[i].tag)].push_back(i);
  double total = 0;
  for (int t = 0; t < kNumTags; ++t) {
    if (!(weights[t] >= 0.0) || !std::isfinite(weights[t]))
      return status::error(status_code::invalid_argument, "`weights[%d]` (%g) must be finite and >= 0", t, weights[t]);
    if (!by_tag[t].empty()) total += weights[t];
  }
  if (!(total > 0.0))
    return status::error(status_code::invalid_argument, "every tag present in `pool` has weight 0");
  Rng rng(derive_seed(seed, index));
  const double u = unit(rng) * total;
  int tag = -1;
  double acc = 0;
  for (int t = 0; t < kNumTags; ++t) {
    if (by_tag[t].empty() || weights[t] <= 0.0) continue;
    tag = t;  // the last eligible tag absorbs rounding
    acc += weights[t];
    if (u < acc) break;
  }
  const auto& members = by_tag[tag];
  picked = members[below(rng, static_cast<std::uint64_t>(members.size()))];
  return gcpo::ok();
}

// ---- rendering ---------------------------------------------------------------------------------

namespace {

constexpr int kRenderRestarts = 200;

struct Want {
  Shape shape;
  Color color;
  int clause;
};

}  // namespace

status render(const Metadata& meta, const TaskConfig& config, std::uint64_t seed, Grid& out,
              std::vector<PlacedObject>* objects) {
  GCPO_TRY(validate(config));
  GCPO_TRY(validate(meta));
  if (meta.include.empty()) return status::error(status_code::invalid_argument, "`include` is empty: nothing to draw");
  for (const Exclude& ex : meta.exclude)
    for (const Include& in : meta.include)
      if (ex.cls == in.cls && ex.count <= in.count)
        return status::error(status_code::invalid_argument,
                             "the record asks for %d %s and for fewer than %d: it cannot be satisfied", in.count,
                             name(in.cls), ex.count);

  Rng rng(derive_seed(seed, 0x12e4de2ULL));
  const int H = config.height, W = config.width;
  const int bg = background_token(below(rng, kNumBackground));

  // The objects: exactly `count` per include clause, with the colour asked or a random one.
  std::vector<Want> wants;
  for (std::size_t k = 0; k < meta.include.size(); ++k) {
    const Include& in = meta.include[k];
    for (int i = 0; i < in.count; ++i)
      wants.push_back(Want{in.cls, in.color ? *in.color : static_cast<Color>(below(rng, kNumColors)),
                           static_cast<int>(k)});
  }
  if (wants.size() > 64) return status::error(status_code::invalid_argument, "too many objects (%zu)", wants.size());
  std::vector<int> shades(wants.size());
  for (auto& s : shades) s = below(rng, kShadesPerColor);

  std::array<std::vector<int>, kNumShapes> sizes;
  for (int s = 0; s < kNumShapes; ++s) {
    sizes[s] = drawable_sizes(static_cast<Shape>(s), config);
  }
  for (const Want& w : wants)
    if (sizes[idx(w.shape)].empty())
      return status::error(status_code::invalid_argument, "no %s fits a %d x %d grid", name(w.shape), H, W);

  std::vector<char> blocked(static_cast<std::size_t>(H) * W);
  std::vector<PlacedObject> placed;
  std::vector<Box> boxes;
  for (int attempt = 0; attempt < kRenderRestarts; ++attempt) {
    const bool smallest = attempt >= kRenderRestarts / 2;
    std::fill(blocked.begin(), blocked.end(), 0);
    placed.clear();
    boxes.clear();
    bool ok = true;
    for (std::size_t i = 0; i < wants.size() && ok; ++i) {
      const Want& w = wants[i];
      const auto& choices = sizes[idx(w.shape)];
      const int size = smallest ? choices.front() : choices[below(rng, static_cast<int>(choices.size()))];
      const Mask m = shape_mask(w.shape, size);
      const Include& in = meta.include[w.clause];
      std::vector<std::pair<int, int>> candidates;
      for (int top = 0; top + m.height <= H; ++top)
        for (int left = 0; left + m.width <= W; ++left) {
          bool free = true;
          for (int y = 0; y < m.height && free; ++y)
            for (int x = 0; x < m.width && free; ++x)
              if (m.at(y, x) && blocked[static_cast<std::size_t>(top + y) * W + left + x]) free = false;
          if (!free) continue;
          if (in.position) {
            const Box box{left, top, left + m.width, top + m.height};
            for (std::size_t j = 0; j < placed.size() && free; ++j)
              if (placed[j].clause == in.position->target && !in_relation(box, in.position->relation, boxes[j]))
                free = false;
            if (!free) continue;
          }
          candidates.emplace_back(top, left);
        }
      if (candidates.empty()) {
        ok = false;
        break;
      }
      const auto [top, left] = candidates[below(rng, static_cast<int>(candidates.size()))];
      // Block the object's cells and their 8-neighbours.
      for (int y = 0; y < m.height; ++y)
        for (int x = 0; x < m.width; ++x) {
          if (!m.at(y, x)) continue;
          for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
              const int gy = top + y + dy, gx = left + x + dx;
              if (gy >= 0 && gy < H && gx >= 0 && gx < W) blocked[static_cast<std::size_t>(gy) * W + gx] = 1;
            }
        }
      placed.push_back(PlacedObject{w.shape, w.color, size, top, left, w.clause});
      boxes.push_back(Box{left, top, left + m.width, top + m.height});
    }
    if (!ok) continue;
    Grid g(H, W, bg);
    for (std::size_t i = 0; i < placed.size(); ++i)
      draw_shape(g, placed[i].shape, placed[i].size, placed[i].top, placed[i].left,
                 color_token(placed[i].color, shades[i]));
    const ScoreResult r = score(g, meta);
    if (!r.correct || !r.strict_correct) continue;  // cannot happen with the default detector; be safe
    out = std::move(g);
    if (objects) *objects = placed;
    return gcpo::ok();
  }
  return status::error(status_code::invalid_argument, "cannot draw \"%s\" in a %d x %d grid (%d tries)",
                       meta.prompt.c_str(), H, W, kRenderRestarts);
}

status make_sample(const std::vector<Metadata>& pool, const TaskConfig& config, std::uint64_t seed,
                   std::uint64_t index, Sample& out, const TagWeights& weights) {
  std::size_t p = 0;
  GCPO_TRY(pick_prompt(pool, seed, index, p, weights));
  Sample s;
  s.meta = pool[p];
  // A prompt drawn in one try of render() nearly always; retry with further derived seeds.
  status last;
  for (std::uint64_t k = 0; k < 8; ++k) {
    last = render(s.meta, config, derive_seed(derive_seed(seed, index), 0xd4a3ULL + k), s.grid);
    if (last.ok()) {
      out = std::move(s);
      return gcpo::ok();
    }
  }
  return last;
}

status make_samples(const std::vector<Metadata>& pool, const TaskConfig& config, std::uint64_t seed,
                    std::uint64_t first, std::size_t count, std::vector<Sample>& out, const TagWeights& weights) {
  std::vector<Sample> v(count);
  for (std::size_t i = 0; i < count; ++i) GCPO_TRY(make_sample(pool, config, seed, first + i, v[i], weights));
  out = std::move(v);
  return gcpo::ok();
}

// =============================================================================================
// Tokenizer
// =============================================================================================

PromptTokenizer::PromptTokenizer() {
  words_ = {"<pad>", "<bos>", "<boi>", "<user>", "<assistant>", "a",     "an",   "photo", "of",
            "and",   "left",  "right", "above", "below",       "two",   "three", "four"};
  for (auto* s : kShapeNames) words_.emplace_back(s);
  for (auto* s : kShapePlurals) words_.emplace_back(s);
  for (auto* s : kColorNames) words_.emplace_back(s);
}

int PromptTokenizer::word_id(std::string_view word) const noexcept {
  for (int i = num_special; i < vocab_size(); ++i)
    if (words_[i] == word) return i;
  return -1;
}

status PromptTokenizer::encode(std::string_view prompt, std::vector<int>& ids, const EncodeOptions& o) const {
  std::vector<int> out;
  if (o.add_bos) out.push_back(bos_id);
  if (o.chat_template) out.push_back(user_id);
  std::size_t i = 0;
  int nwords = 0;
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  while (i < prompt.size()) {
    while (i < prompt.size() && space(prompt[i])) ++i;
    if (i >= prompt.size()) break;
    std::size_t j = i;
    while (j < prompt.size() && !space(prompt[j])) ++j;
    const std::string_view w = prompt.substr(i, j - i);
    const int id = word_id(w);
    if (id < 0) {
      const std::string ws(w), ps(prompt);
      return status::error(status_code::invalid_argument,
                           "unknown word \"%s\" (word %d) in prompt \"%s\": the shapes tokenizer has no id for it",
                           ws.c_str(), nwords, ps.c_str());
    }
    out.push_back(id);
    ++nwords;
    i = j;
  }
  if (nwords == 0) return status::error(status_code::invalid_argument, "empty prompt");
  if (o.chat_template) out.push_back(assistant_id);
  if (o.add_boi) out.push_back(boi_id);
  ids = std::move(out);
  return gcpo::ok();
}

std::string PromptTokenizer::decode(const std::vector<int>& ids) const {
  std::string s;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += ids[i] >= 0 && ids[i] < vocab_size() ? words_[ids[i]] : std::string("<?>");
  }
  return s;
}

int PromptTokenizer::max_length(const EncodeOptions& options) const {
  int best = 0;
  std::vector<int> ids;
  for (const auto& m : enumerate_prompts())
    if (encode(m.prompt, ids, options).ok()) best = std::max(best, static_cast<int>(ids.size()));
  return best;
}

// =============================================================================================
// Evaluation
// =============================================================================================

double EvalReport::overall() const noexcept {
  double s = 0;
  int k = 0;
  for (const auto& t : per_tag)
    if (t.n > 0) {
      s += t.accuracy();
      ++k;
    }
  return k ? s / k : 0.0;
}

namespace {
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}
std::string stats_json(const TagStats& t) {
  return "\"n\": " + std::to_string(t.n) + ", \"accuracy\": " + num(t.accuracy()) +
         ", \"strict_accuracy\": " + num(t.strict_accuracy()) + ", \"clean_accuracy\": " + num(t.clean_accuracy()) +
         ", \"mean_reward\": " + num(t.mean_reward()) +
         ", \"mean_partial\": " + num(t.mean_partial());
}
void add(TagStats& t, const ScoreResult& r) {
  t.n += 1;
  t.correct += r.correct;
  t.strict_correct += r.strict_correct;
  t.clean_correct += r.clean_correct;
  t.reward_sum += r.reward;
  t.partial_sum += r.partial;
}
}  // namespace

std::string EvalReport::to_json() const {
  std::string s = "{\"overall\": " + num(overall()) + ", " + stats_json(all) + ", \"tags\": {";
  bool first = true;
  for (int t = 0; t < kNumTags; ++t) {
    if (per_tag[t].n == 0) continue;
    s += (first ? "\"" : ", \"") + std::string(kTagNames[t]) + "\": {" + stats_json(per_tag[t]) + "}";
    first = false;
  }
  return s + "}}";
}

EvalReport evaluate(const std::vector<Sample>& samples, const ScoreOptions& options) {
  EvalReport rep;
  for (const auto& s : samples) {
    const ScoreResult r = score(s.grid, s.meta, options);
    add(rep.per_tag[idx(s.meta.tag)], r);
    add(rep.all, r);
  }
  return rep;
}

status evaluate(const std::vector<Metadata>& metas, const std::vector<Grid>& grids, const ScoreOptions& options,
                EvalReport& out) {
  if (metas.size() != grids.size())
    return status::error(status_code::invalid_argument, "`metas.size()` (%zu) must equal `grids.size()` (%zu)",
                         metas.size(), grids.size());
  EvalReport rep;
  for (std::size_t i = 0; i < metas.size(); ++i) {
    const ScoreResult r = score(grids[i], metas[i], options);
    add(rep.per_tag[idx(metas[i].tag)], r);
    add(rep.all, r);
  }
  out = rep;
  return gcpo::ok();
}

// =============================================================================================
// Pictures
// =============================================================================================

Image::Image(int w, int h, Rgb fill) : width(w), height(h), rgb(static_cast<std::size_t>(w) * h * 3) {
  for (std::size_t i = 0; i < rgb.size(); i += 3) {
    rgb[i] = fill.r;
    rgb[i + 1] = fill.g;
    rgb[i + 2] = fill.b;
  }
}

Image decode(const Grid& grid, int patch) {
  patch = std::max(1, patch);
  Image img(std::max(0, grid.width) * patch, std::max(0, grid.height) * patch);
  if (grid.tokens.size() != static_cast<std::size_t>(std::max(0, grid.height)) * std::max(0, grid.width)) return img;
  for (int y = 0; y < grid.height; ++y)
    for (int x = 0; x < grid.width; ++x) {
      const Rgb c = token_rgb(grid.at(y, x));
      for (int py = 0; py < patch; ++py)
        for (int px = 0; px < patch; ++px) img.set(x * patch + px, y * patch + py, c);
    }
  return img;
}

status grid_of_image(const Image& image, int height, int width, Grid& out) {
  if (height < 1 || width < 1)
    return status::error(status_code::invalid_argument, "`height` (%d) and `width` (%d) must be positive", height, width);
  if (image.width < width || image.height < height || image.width % width != 0 || image.height % height != 0 ||
      image.rgb.size() != static_cast<std::size_t>(image.width) * image.height * 3)
    return status::error(status_code::invalid_argument,
                         "`image` (%dx%d pixels) is not cut into %dx%d equal cells: its sides must be multiples of "
                         "the grid's",
                         image.width, image.height, width, height);
  const int pw = image.width / width, ph = image.height / height;
  Grid g(height, width);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      long sum[3] = {0, 0, 0};
      for (int py = 0; py < ph; ++py)
        for (int px = 0; px < pw; ++px) {
          const Rgb c = image.at(x * pw + px, y * ph + py);
          sum[0] += c.r;
          sum[1] += c.g;
          sum[2] += c.b;
        }
      const double n = static_cast<double>(pw) * ph;
      const double mean[3] = {sum[0] / n, sum[1] / n, sum[2] / n};
      int best = 0;
      double best_d = 0;
      for (int t = 0; t < kCodebookSize; ++t) {
        const Rgb c = token_rgb(t);
        const double d = (mean[0] - c.r) * (mean[0] - c.r) + (mean[1] - c.g) * (mean[1] - c.g) +
                         (mean[2] - c.b) * (mean[2] - c.b);
        if (t == 0 || d < best_d) {
          best = t;
          best_d = d;
        }
      }
      g.tokens[static_cast<std::size_t>(y) * width + x] = best;
    }
  out = std::move(g);
  return gcpo::ok();
}

Image tile(const std::vector<Image>& images, const std::vector<Mark>& marks, const SheetOptions& o) {
  const int gap = std::max(0, o.gap), border = std::max(0, o.border);
  const int n = static_cast<int>(images.size());
  if (n == 0) return Image(std::max(1, gap), std::max(1, gap), o.background);
  int cols = o.columns > 0 ? o.columns : static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  cols = std::min(cols, n);
  const int rows = (n + cols - 1) / cols;
  int cw = 0, ch = 0;
  for (const auto& im : images) {
    cw = std::max(cw, im.width);
    ch = std::max(ch, im.height);
  }
  const int tw = cw + 2 * border, th = ch + 2 * border;
  Image sheet(gap + cols * (tw + gap), gap + rows * (th + gap), o.background);
  for (int i = 0; i < n; ++i) {
    const int x0 = gap + (i % cols) * (tw + gap), y0 = gap + (i / cols) * (th + gap);
    const Mark mk = marks.size() == images.size() ? marks[i] : Mark::none;
    const Rgb frame = mk == Mark::correct ? Rgb{30, 170, 60} : mk == Mark::incorrect ? Rgb{215, 30, 30} : o.background;
    const Image& im = images[i];
    for (int y = 0; y < im.height + 2 * border; ++y)
      for (int x = 0; x < im.width + 2 * border; ++x) {
        const bool inside = x >= border && x < border + im.width && y >= border && y < border + im.height;
        sheet.set(x0 + x, y0 + y, inside ? im.at(x - border, y - border) : frame);
      }
  }
  return sheet;
}

Image sample_sheet(const std::vector<Grid>& grids, const std::vector<Mark>& marks, const SheetOptions& options) {
  std::vector<Image> images;
  images.reserve(grids.size());
  for (const auto& g : grids) images.push_back(decode(g, options.patch));
  return tile(images, marks, options);
}

Mark mark_of(const ScoreResult& result) noexcept { return result.correct ? Mark::correct : Mark::incorrect; }

status encode_png(const Image& image, std::string& out) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<std::size_t>(image.width) * image.height * 3)
    return status::error(status_code::invalid_argument, "cannot encode an empty or inconsistent %d x %d image",
                         image.width, image.height);
  png_image pi;
  std::memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  pi.width = static_cast<png_uint_32>(image.width);
  pi.height = static_cast<png_uint_32>(image.height);
  pi.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (png_image_write_to_memory(&pi, nullptr, &size, 0, image.rgb.data(), 0, nullptr) && size > 0) {
    std::string bytes(size, '\0');
    if (png_image_write_to_memory(&pi, &bytes[0], &size, 0, image.rgb.data(), 0, nullptr)) {
      bytes.resize(size);
      out = std::move(bytes);
      png_image_free(&pi);
      return gcpo::ok();
    }
  }
  const std::string msg = pi.message;
  png_image_free(&pi);
  return status::error(status_code::invalid_argument, "cannot encode PNG: %s", msg.c_str());
}

status write_png(const std::string& path, const Image& image) {
  std::string bytes;
  GCPO_TRY(encode_png(image, bytes));
  try {
    janus::write_file_atomic(path, bytes);
  } catch (const std::exception& e) {
    return status::error(status_code::invalid_argument, "cannot write PNG \"%s\": %s", path.c_str(), e.what());
  }
  return gcpo::ok();
}

status read_png(const std::string& path, Image& out) {
  png_image pi;
  std::memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&pi, path.c_str()))
    return status::error(status_code::invalid_argument, "cannot read PNG \"%s\": %s", path.c_str(), pi.message);
  pi.format = PNG_FORMAT_RGB;
  Image img(static_cast<int>(pi.width), static_cast<int>(pi.height));
  if (!png_image_finish_read(&pi, nullptr, img.rgb.data(), 0, nullptr)) {
    const std::string msg = pi.message;
    png_image_free(&pi);
    return status::error(status_code::invalid_argument, "cannot decode PNG \"%s\": %s", path.c_str(), msg.c_str());
  }
  png_image_free(&pi);
  out = std::move(img);
  return gcpo::ok();
}

}  // namespace shapes
