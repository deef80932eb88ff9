// shapes_task.hpp - task "shapes": a GenEval in miniature for the Janus example trainer.
//
// Plain C++17 (no libtorch). The trainer uses it for its data (prompts, supervised pairs), its
// rewards (a detector plus GenEval's scoring rules) and its pictures (PNG sample sheets).
//
// The task in one paragraph
// -------------------------
// An image is an H x W grid of tokens (default 16 x 16; 8 x 8 and other sizes from 4 to 128
// work) over a codebook of V = 22 tokens: 4 background shades and 3 shades of each of six
// colours. Objects are squares, circles and triangles drawn as blobs a few tokens across in one
// colour. Prompts and their metadata follow GenEval's JSONL format and templates for its six
// tags ("a photo of a red circle", "a photo of two squares", "a photo of a triangle left of a
// circle", "a photo of a blue square and a yellow circle"). A detector finds the objects of a
// grid (connected components, colour, shape from the fill ratio and the corners of the
// bounding box, centroid) and GenEval's rules (../shared/spec/geneval-rules.md) score them
// against the metadata: binary correctness by default, strict and partial credit as options.
//
// Codebook layout (V = kCodebookSize = 22)
// ----------------------------------------
//   token 0..3    background shades, light to darker grey (is_background)
//   token 4..6    red    (light, mid, dark)       color_token(Color::red, shade)
//   token 7..9    orange                          = kNumBackground + 3 * colour + shade
//   token 10..12  yellow
//   token 13..15  green
//   token 16..18  blue
//   token 19..21  purple
// Tokens outside [0, V) never come from the generator; the detector treats them as background
// and decode() paints them magenta, so they show up in pictures.
//
// Determinism
// -----------
// Every random choice comes from std::mt19937_64 (whose output the C++ standard fixes) through
// this file's own integer and real draws (the standard's distributions are implementation
// defined), seeded by derive_seed(). The same seed gives the same prompts and grids with any
// conforming compiler and standard library, run to run and machine to machine.
//
// Errors
// ------
// As in the rest of gcpo, nothing here throws or exits: functions that can fail return a
// [[nodiscard]] gcpo::status whose message names what was wrong.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gcpo/status.hpp>

namespace shapes {

using gcpo::status;

// =============================================================================================
// Classes, colours, tags and relations
// =============================================================================================

/// The object classes (GenEval's `class`).
enum class Shape : std::uint8_t { square = 0, circle = 1, triangle = 2 };
inline constexpr int kNumShapes = 3;

/// The colours (a subset of GenEval's ten; pink, brown, black and white are not used).
enum class Color : std::uint8_t { red = 0, orange = 1, yellow = 2, green = 3, blue = 4, purple = 5 };
inline constexpr int kNumColors = 6;

/// GenEval's six prompt tags.
enum class Tag : std::uint8_t { single_object = 0, two_object, counting, colors, position, color_attr };
inline constexpr int kNumTags = 6;

/// GenEval's relations: "A <relation> B", image coordinates (y grows downwards).
enum class Relation : std::uint8_t { left_of = 0, right_of, above, below };
inline constexpr int kNumRelations = 4;

/// Names as they appear in metadata and prompts: "square", "red", "color_attr", "left of".
const char* name(Shape s) noexcept;
const char* name(Color c) noexcept;
const char* name(Tag t) noexcept;
const char* name(Relation r) noexcept;
/// The plural used in counting prompts: "squares", "circles", "triangles".
const char* plural(Shape s) noexcept;

/// Inverse of name(): the value whose name is `text` exactly (case-sensitive), or nullopt.
std::optional<Shape> shape_from_name(std::string_view text) noexcept;
std::optional<Color> color_from_name(std::string_view text) noexcept;
std::optional<Tag> tag_from_name(std::string_view text) noexcept;
std::optional<Relation> relation_from_name(std::string_view text) noexcept;

// =============================================================================================
// Codebook and grids
// =============================================================================================

inline constexpr int kNumBackground = 4;   ///< background shades, tokens 0..3
inline constexpr int kShadesPerColor = 3;  ///< light, mid, dark
/// V, the number of image tokens.
inline constexpr int kCodebookSize = kNumBackground + kNumColors * kShadesPerColor;  // 22

/// V, the number of image tokens (22). The model's image vocabulary must be at least this.
constexpr int codebook_size() noexcept { return kCodebookSize; }
/// The token of background shade `shade` (0..3, clamped).
constexpr int background_token(int shade) noexcept {
  return shade < 0 ? 0 : (shade >= kNumBackground ? kNumBackground - 1 : shade);
}
/// The token of colour `c` in shade `shade` (0 light, 1 mid, 2 dark; clamped).
constexpr int color_token(Color c, int shade) noexcept {
  const int s = shade < 0 ? 0 : (shade >= kShadesPerColor ? kShadesPerColor - 1 : shade);
  return kNumBackground + static_cast<int>(c) * kShadesPerColor + s;
}
/// True for the background tokens 0..3 and for tokens outside [0, V) (the detector's view).
constexpr bool is_background(int token) noexcept {
  return token < kNumBackground || token >= kCodebookSize;
}
/// The colour family of a colour token, nullopt for background and out-of-range tokens.
std::optional<Color> token_color(int token) noexcept;

/// An 8-bit RGB colour.
struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb& a, const Rgb& b) noexcept { return a.r == b.r && a.g == b.g && a.b == b.b; }
};
/// The colour a token is painted with by decode(); magenta (255, 0, 255) outside [0, V).
Rgb token_rgb(int token) noexcept;

/// An image as tokens: `height` rows of `width` tokens, row-major (`tokens[y * width + x]`).
/// This is the order in which the model generates them (raster order, as Janus-Pro).
struct Grid {
  int height = 0;
  int width = 0;
  std::vector<int> tokens;

  Grid() = default;
  /// A height x width grid filled with `fill` (default: background shade 0).
  Grid(int h, int w, int fill = background_token(0)) : height(h), width(w), tokens(static_cast<std::size_t>(h) * w, fill) {}
  /// A grid copied from `h * w` row-major tokens (e.g. a libtorch int64 tensor's data).
  template <class T>
  static Grid from_tokens(int h, int w, const T* data) {
    Grid g(h, w);
    for (std::size_t i = 0; i < g.tokens.size(); ++i) g.tokens[i] = static_cast<int>(data[i]);
    return g;
  }
  /// Token at row y, column x (no bounds check).
  int& at(int y, int x) { return tokens[static_cast<std::size_t>(y) * width + x]; }
  int at(int y, int x) const { return tokens[static_cast<std::size_t>(y) * width + x]; }
  friend bool operator==(const Grid& a, const Grid& b) {
    return a.height == b.height && a.width == b.width && a.tokens == b.tokens;
  }
  friend bool operator!=(const Grid& a, const Grid& b) { return !(a == b); }
};

/// The size of the images of a task.
struct TaskConfig {
  int height = 16;  ///< grid rows, 4..128
  int width = 16;   ///< grid columns, 4..128
  /// Largest bounding-box side (tokens) of a generated object; 0 = automatic:
  /// max(4, min(height, width) * 3 / 8), i.e. 6 at 16 x 16 and 4 at 8 x 8.
  int max_object_extent = 0;
};
/// Checks the ranges documented in TaskConfig.
status validate(const TaskConfig& config);

// =============================================================================================
// Shapes as token blobs
// =============================================================================================

/// A shape's cells at a given size: a `height` x `width` mask, row-major, 1 = object cell.
///   square   size s: s x s, all cells (fill ratio 1).
///   circle   size d (diameter, >= 4): the cells whose centres lie within d/2 of the centre;
///            fill 12/16 = 0.75 (d 4), 21/25 = 0.84 (d 5), 37/49 = 0.755 (d 7), 52/64 = 0.81
///            (d 8). d = 6 (fill 0.89) and d < 4 are not drawn: too close to a square, or not
///            round; shape_mask() still returns them.
///   triangle size h (height, >= 2): apex up, row i has 2i+1 cells, width 2h - 1;
///            fill 4/6 = 0.67 (h 2), 9/15 = 0.6 (h 3), 16/28 = 0.57 (h 4).
/// The ideal continuous fill ratios are 1, pi/4 = 0.785 and 0.5.
struct Mask {
  int height = 0;
  int width = 0;
  std::vector<std::uint8_t> cells;
  bool at(int y, int x) const { return cells[static_cast<std::size_t>(y) * width + x] != 0; }
  /// Number of object cells.
  int area() const;
};
/// The mask of `shape` at `size` (see Mask). An empty mask for size < 1.
Mask shape_mask(Shape shape, int size);
/// The sizes the generator draws `shape` at in a task, smallest first: squares 2..5, circles
/// 4, 5, 7, 8, triangles 2..4, limited to a bounding box of at most `max_object_extent`
/// (TaskConfig) per side. At 16 x 16: squares 2-5, circles 4-5, triangles 2-3 (3 and 5 wide);
/// at 8 x 8: squares 2-4, circles 4, triangles 2.
std::vector<int> drawable_sizes(Shape shape, const TaskConfig& config);
/// Paints the cells of shape_mask(shape, size) with `token`, top-left corner at (top, left);
/// cells outside the grid are skipped.
void draw_shape(Grid& grid, Shape shape, int size, int top, int left, int token);

// =============================================================================================
// Metadata (GenEval's JSONL records) and prompts
// =============================================================================================

/// `"position": [relation, target]`: the clause's objects stand in `relation` to every object
/// of include clause `target`, which comes earlier.
struct Position {
  Relation relation = Relation::left_of;
  int target = 0;
  friend bool operator==(const Position& a, const Position& b) { return a.relation == b.relation && a.target == b.target; }
};

/// An include clause: at least `count` objects of class `cls` (with `color`, and in `position`).
struct Include {
  Shape cls = Shape::square;
  int count = 1;
  std::optional<Color> color;
  std::optional<Position> position;
  friend bool operator==(const Include& a, const Include& b) {
    return a.cls == b.cls && a.count == b.count && a.color == b.color && a.position == b.position;
  }
};

/// An exclude clause: fewer than `count` objects of class `cls`.
struct Exclude {
  Shape cls = Shape::square;
  int count = 1;
  friend bool operator==(const Exclude& a, const Exclude& b) { return a.cls == b.cls && a.count == b.count; }
};

/// One GenEval metadata record (one line of a JSONL file).
struct Metadata {
  Tag tag = Tag::single_object;
  std::vector<Include> include;
  std::vector<Exclude> exclude;
  std::string prompt;
  friend bool operator==(const Metadata& a, const Metadata& b) {
    return a.tag == b.tag && a.include == b.include && a.exclude == b.exclude && a.prompt == b.prompt;
  }
  friend bool operator!=(const Metadata& a, const Metadata& b) { return !(a == b); }
};

/// Checks a record: counts >= 1, position targets index an earlier include clause, and the
/// clauses its tag has (GenEval's generator): one for single_object, counting and colors (with
/// a colour), two for two_object, position (the second with a position) and color_attr (both
/// with a colour); an empty `include` is an error.
status validate(const Metadata& meta);

/// GenEval's templates (its create_prompts.py), with "an" before a vowel:
///   single_object  "a photo of a square"                   include [{square, 1}]
///   two_object     "a photo of a square and a circle"      include [{square, 1}, {circle, 1}]
///   counting       "a photo of three triangles"            include [{triangle, 3}], exclude [{triangle, 4}]
///   colors         "a photo of an orange circle"           include [{circle, 1, orange}]
///   position       "a photo of a triangle left of a circle"
///                  include [{circle, 1}, {triangle, 1, position ["left of", 0]}]
///   color_attr     "a photo of a blue square and a yellow circle"
///                  include [{square, 1, blue}, {circle, 1, yellow}]
/// Each builder returns the complete record, prompt included. GenEval's generator uses two
/// different classes in two_object, position and color_attr and two different colours in
/// color_attr; the builders do not enforce it (the prompt space below does).
Metadata make_single_object(Shape a);
Metadata make_two_object(Shape a, Shape b);
Metadata make_counting(Shape a, int count);
Metadata make_colors(Shape a, Color color);
/// "a photo of a <a> <relation> a <b>": object a stands in `relation` to object b.
Metadata make_position(Shape a, Relation relation, Shape b);
Metadata make_color_attr(Shape a, Color color_a, Shape b, Color color_b);
/// The prompt text of a record from its tag and clauses (the templates above); "" when the
/// clauses do not have the shape the tag asks for.
std::string prompt_text(const Metadata& meta);

/// One record as one line in GenEval's own format (Python json.dumps style, keys in the order
/// tag, include, exclude, prompt; `exclude` left out when empty; no newline), e.g.
/// {"tag": "counting", "include": [{"class": "circle", "count": 2}], "exclude": [{"class": "circle", "count": 3}], "prompt": "a photo of two circles"}
std::string to_json_line(const Metadata& meta);
/// Parses one JSON line. Needs `tag`, `include` and `prompt`; `exclude`, `color` and
/// `position` are optional; other keys are ignored. Unknown classes, colours, tags or
/// relations are errors naming the field.
status from_json_line(std::string_view line, Metadata& out);
/// Writes one line per record (each ends with '\n'), atomically (temporary file, fsync, rename).
status write_jsonl(const std::string& path, const std::vector<Metadata>& records);
/// Reads every non-blank line of a JSONL file, each parsed and validate()d (appends nothing on
/// error; errors name the file and line as "path:line"). A directory is an error.
status read_jsonl(const std::string& path, std::vector<Metadata>& out);

// =============================================================================================
// The prompt space, its train/held-out split and seeded draws
// =============================================================================================

/// Every prompt of the task in a fixed order (tag, then classes, colours, relations, counts in
/// enum order): 3 single_object, 6 two_object, 9 counting (2, 3, 4), 18 colors, 24 position,
/// 180 color_attr = 240 records, as GenEval's generator would make them over these classes
/// and colours.
std::vector<Metadata> enumerate_prompts();
/// True when the generator can draw the record in a grid of this size (tried with a fixed
/// seed); false, for example, for "three circles" at 8 x 8.
bool is_feasible(const Metadata& meta, const TaskConfig& config);
/// enumerate_prompts() restricted to the feasible records (all 240 at 16 x 16).
std::vector<Metadata> task_prompts(const TaskConfig& config);

/// How to split the prompts into training and held-out prompts.
struct SplitOptions {
  double heldout_fraction = 0.2;  ///< per tag, in [0, 1)
  std::uint64_t seed = 0;         ///< which prompts are held out
};
/// Disjoint sets of prompts, each in enumerate_prompts() order.
struct PromptSplit {
  std::vector<Metadata> train;
  std::vector<Metadata> heldout;
};
/// Splits task_prompts(config) tag by tag: a seeded shuffle of the tag's prompts, the first
/// round(fraction * n) held out, at least one held out and one kept for training whenever the
/// tag has two or more prompts (fraction 0: nothing held out). No prompt text is in both sets.
/// The split depends on the grid size through task_prompts().
status split_prompts(const TaskConfig& config, const SplitOptions& options, PromptSplit& out);

/// A 64-bit seed for item `index` of a stream seeded by `seed` (splitmix64 of both). Use it to
/// make any item of a seeded sequence directly, so a resumed run continues exactly.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) noexcept;

/// Relative weights of the tags when drawing prompts (GenEval's test set is about uniform).
using TagWeights = std::array<double, kNumTags>;
inline constexpr TagWeights kUniformTags = {1, 1, 1, 1, 1, 1};

/// Draw `index` of the prompt stream `seed` from `pool`: a tag with probability proportional
/// to its weight among the tags present in `pool`, then one of that tag's prompts uniformly.
/// A pure function of (pool, seed, index, weights). Returns the index into `pool`; fails on an
/// empty pool or when every tag present has weight 0.
status pick_prompt(const std::vector<Metadata>& pool, std::uint64_t seed, std::uint64_t index,
                   std::size_t& picked, const TagWeights& weights = kUniformTags);

/// Where the generator put one object.
struct PlacedObject {
  Shape shape = Shape::square;
  Color color = Color::red;
  int size = 0;      ///< as in shape_mask()
  int top = 0;       ///< row of the mask's top-left corner
  int left = 0;      ///< column of the mask's top-left corner
  int clause = 0;    ///< the include clause it belongs to
};

/// Draws a grid that satisfies `meta` exactly: one uniform background shade, then exactly the
/// objects the include clauses ask for (the count asked, the colour asked or a random one, one
/// random shade per object, random drawable sizes, random positions, the relation asked),
/// never touching (no two objects' cells are 8-neighbours). The result is checked with score()
/// (binary and strict, default options) before it is returned. A pure function of (meta,
/// config, seed). Fails when the record is invalid or cannot be drawn at this grid size.
status render(const Metadata& meta, const TaskConfig& config, std::uint64_t seed, Grid& out,
              std::vector<PlacedObject>* objects = nullptr);

/// A prompt with an image.
struct Sample {
  Metadata meta;
  Grid grid;
};
/// Item `index` of the supervised stream `seed`: pick_prompt(pool, seed, index) rendered with
/// a seed derived from (seed, index). A pure function of its arguments.
status make_sample(const std::vector<Metadata>& pool, const TaskConfig& config, std::uint64_t seed,
                   std::uint64_t index, Sample& out, const TagWeights& weights = kUniformTags);
/// Items first .. first + count - 1 of the stream (replaces `out`).
status make_samples(const std::vector<Metadata>& pool, const TaskConfig& config, std::uint64_t seed,
                    std::uint64_t first, std::size_t count, std::vector<Sample>& out,
                    const TagWeights& weights = kUniformTags);

// =============================================================================================
// The prompt tokenizer
// =============================================================================================

/// How encode() frames the words.
struct EncodeOptions {
  bool add_bos = true;         ///< start with bos_id
  bool chat_template = false;  ///< user_id before and assistant_id after the words (the
                               ///< "User: <p>\n\nAssistant:" frame of the official trainer)
  bool add_boi = false;        ///< end with boi_id (begin of image)
};

/// A fixed word-level vocabulary: every word the prompts of this task use, plus special ids.
/// Prompts are split on ASCII whitespace; words are matched exactly (case-sensitive).
/// Ids: 0 <pad>, 1 <bos>, 2 <boi> (begin of image), 3 <user>, 4 <assistant>, then the words in
/// this order: a an photo of and left right above below two three four, the classes
/// (singular, then plural), the colours: 29 ids in all.
class PromptTokenizer {
 public:
  static constexpr int pad_id = 0;
  static constexpr int bos_id = 1;
  static constexpr int boi_id = 2;
  static constexpr int user_id = 3;
  static constexpr int assistant_id = 4;
  static constexpr int num_special = 5;

  PromptTokenizer();
  /// Number of ids (29).
  int vocab_size() const noexcept { return static_cast<int>(words_.size()); }
  /// The string of every id ("<pad>", "<bos>", ..., "a", "an", ...).
  const std::vector<std::string>& vocabulary() const noexcept { return words_; }
  /// The id of a word, or -1 when the word is not in the vocabulary.
  int word_id(std::string_view word) const noexcept;
  /// Replaces `ids` with the framed ids of `prompt`. An unknown word (or an empty prompt) is
  /// an error whose message names the word and its position; `ids` is then left unchanged.
  status encode(std::string_view prompt, std::vector<int>& ids, const EncodeOptions& options = {}) const;
  /// The words of `ids` joined by spaces; special ids as their names; "<?>" for unknown ids.
  std::string decode(const std::vector<int>& ids) const;
  /// The longest encoding of any prompt of enumerate_prompts() with these options (for fixed
  /// padded lengths): 10 words + the frame.
  int max_length(const EncodeOptions& options = {}) const;

 private:
  std::vector<std::string> words_;
};

// =============================================================================================
// The detector
// =============================================================================================

/// Thresholds of the detector. Shape rule, in order, for a component with bounding box w x h,
/// area a, fill = a / (w h), and k = the number of the box's four corner cells it covers:
///   max(w, h) / min(w, h) > max_aspect                     -> no class (a bar, a line)
///   fill >= square_min_fill                                -> square
///   fill >= circle_min_fill and k == 0                     -> circle
///   fill >= triangle_min_fill and (k == 3 or the two
///     covered corners are the ends of one side: a base)    -> triangle
///   otherwise                                              -> no class
/// The defaults separate the drawn shapes (fills: squares 1, circles 0.75-0.84, triangles
/// 0.57-0.67) with margins on both sides.
struct DetectorOptions {
  int min_area = 4;                 ///< smaller components are not objects (noise)
  double square_min_fill = 0.92;
  double circle_min_fill = 0.71;
  double triangle_min_fill = 0.35;
  double max_aspect = 2.0;
  int max_per_class = 16;           ///< as GenEval: at most 16 detections per class
};

/// A bounding box in token units: columns x0 .. x1-1, rows y0 .. y1-1 (x1, y1 exclusive).
struct Box {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  int width() const noexcept { return x1 - x0; }
  int height() const noexcept { return y1 - y0; }
  friend bool operator==(const Box& a, const Box& b) { return a.x0 == b.x0 && a.y0 == b.y0 && a.x1 == b.x1 && a.y1 == b.y1; }
};

/// A connected component of non-background tokens.
struct Component {
  int area = 0;          ///< cells
  Box box;               ///< bounding box
  double cx = 0, cy = 0; ///< centroid of the cell centres (cell (y, x) has centre (x + .5, y + .5))
  double fill = 0;       ///< area / (box width * box height)
  int corners = 0;       ///< bit mask of the box corners covered: 1 top-left, 2 top-right,
                         ///< 4 bottom-left, 8 bottom-right
  std::optional<Shape> shape;             ///< the class, nullopt when none fits
  Color color = Color::red;               ///< majority colour family, ties to the lower enum
  std::array<int, kNumColors> color_votes{};  ///< cells of each colour family
  int first_cell = 0;    ///< raster index (y * width + x) of its first cell in raster order
};

/// What the detector found.
struct Detections {
  /// Every component with area >= min_area, in raster order of their first cells.
  std::vector<Component> components;
  /// Per class (index = Shape), indices into `components` in detection order: area
  /// descending, then top row, then left column, then raster order of the first cell (the
  /// stand-in for GenEval's confidence order); at most max_per_class.
  std::array<std::vector<int>, kNumShapes> by_class;
  /// Components below min_area (ignored).
  int small_components = 0;
  /// Number of detections of a class.
  int count(Shape s) const noexcept { return static_cast<int>(by_class[static_cast<int>(s)].size()); }
  /// Detection i (detection order) of a class; i < count(s).
  const Component& get(Shape s, int i) const { return components[by_class[static_cast<int>(s)][i]]; }
};

/// The shape class of a component (see DetectorOptions).
std::optional<Shape> classify_shape(const Box& box, int area, int corners, const DetectorOptions& options = {});

/// Finds the objects of a grid: connected components of non-background tokens under
/// 4-connectivity (cells sharing an edge; diagonal neighbours are separate components), then
/// colour, shape and centroid of each. Objects of different colours that touch form one
/// component, as one blob.
Detections detect(const Grid& grid, const DetectorOptions& options = {});

/// GenEval's relative position of box A to box B (geneval-rules.md): centres, sizes,
/// offset = cA - cB, revised = max(|offset| - 0.1 (dA + dB), 0) sign(offset) per axis; no
/// relation when both |revised| < 1e-3; else (dx, dy) = revised / |offset| and left of dx <
/// -0.5, right of dx > 0.5, above dy < -0.5, below dy > 0.5 (several can hold). Indexed by
/// Relation. Computed in token units.
std::array<bool, kNumRelations> relations(const Box& a, const Box& b) noexcept;
/// relations(a, b)[r].
bool in_relation(const Box& a, Relation r, const Box& b) noexcept;

// =============================================================================================
// GenEval's scoring rules
// =============================================================================================

/// Which of the three numbers becomes ScoreResult::reward.
enum class ScoreMode : std::uint8_t {
  binary,   ///< GenEval's correctness, 1 or 0 (the reward the official trainer uses)
  strict,   ///< exact counts, 1 or 0
  partial,  ///< the mean of per-clause terms, <= 1 (can be negative: 1 - |count - found| / count)
  clean,    ///< binary correct and nothing else drawn, 1 or 0 (not a GenEval rule; see ScoreResult)
};

/// Options of the scorer.
struct ScoreOptions {
  ScoreMode mode = ScoreMode::binary;
  DetectorOptions detector;
  /// Partial score as reward-server's evaluate_reward computes it: a failed position check
  /// adds a 0 term *and* a 1 term. Off: it adds the 0 term only, as geneval-rules.md says.
  bool partial_as_reward_server = false;
};

/// The outcome of one check of a clause.
enum class Check : std::uint8_t { not_asked, passed, failed, skipped };
/// "not asked", "passed", "failed", "skipped".
const char* name(Check c) noexcept;

/// Details of one include clause under the binary rule.
struct ClauseResult {
  Shape cls = Shape::square;
  int count = 0;           ///< asked
  int found = 0;           ///< detections of the class
  int with_color = -1;     ///< among the first `count` detections, how many have the colour
                           ///< asked; -1 when no colour is asked or the count check failed
  Check count_check = Check::not_asked;
  Check color_check = Check::not_asked;
  Check position_check = Check::not_asked;  ///< skipped when an earlier check of the clause failed
  bool matched = false;    ///< the clause passed (its objects can be a position target)
};

/// Details of one exclude clause.
struct ExcludeResult {
  Shape cls = Shape::square;
  int count = 0;   ///< fewer than this are allowed
  int found = 0;
  bool passed = false;
};

/// The score of one image against one record.
struct ScoreResult {
  double reward = 0;            ///< per ScoreOptions::mode
  bool correct = false;         ///< binary rule
  bool strict_correct = false;  ///< strict rule (exact counts of included classes and colours;
                                ///< exclude clauses applied too)
  double partial = 0;           ///< partial score (0 when there is no include clause)
  /// Binary correct, and the image holds nothing the prompt did not ask for: as many objects
  /// (components of at least min_area, any class) as the include clauses' counts add up to,
  /// and no component below min_area. Not a GenEval rule: GenEval allows extra objects unless
  /// an exclude clause forbids them, which a policy can exploit by drawing clutter.
  bool clean_correct = false;
  std::vector<ClauseResult> include;
  std::vector<ExcludeResult> exclude;
  std::string reason;           ///< why the binary rule failed, one line per failure ("" if correct)
};

/// Scores detections against a record. Binary: go through the include clauses in order; take
/// the first `count` detections of the class (fewer: fail); with a colour, all of them must
/// have it; with a position (only if nothing failed yet) the target clause must have matched
/// and every object must stand in the relation to every target object; then every exclude
/// clause must see fewer than `count` detections. Strict: the same with found == count and
/// all found objects of the colour asked. Partial: see geneval-rules.md. A record that fails
/// validate() scores 0 everywhere with the reason in `reason`.
ScoreResult score(const Detections& detections, const Metadata& meta, const ScoreOptions& options = {});
/// detect(grid, options.detector) then score().
ScoreResult score(const Grid& grid, const Metadata& meta, const ScoreOptions& options = {});

// =============================================================================================
// Held-out evaluation
// =============================================================================================

/// Counts of one tag (or of all samples).
struct TagStats {
  int n = 0;
  int correct = 0;          ///< binary rule
  int strict_correct = 0;
  int clean_correct = 0;    ///< ScoreResult::clean_correct (not a GenEval rule)
  double reward_sum = 0;    ///< sum of ScoreResult::reward (the mode asked)
  double partial_sum = 0;
  double accuracy() const noexcept { return n ? static_cast<double>(correct) / n : 0.0; }
  double strict_accuracy() const noexcept { return n ? static_cast<double>(strict_correct) / n : 0.0; }
  double clean_accuracy() const noexcept { return n ? static_cast<double>(clean_correct) / n : 0.0; }
  double mean_reward() const noexcept { return n ? reward_sum / n : 0.0; }
  double mean_partial() const noexcept { return n ? partial_sum / n : 0.0; }
};

/// Per-tag accuracy over a set of images.
struct EvalReport {
  std::array<TagStats, kNumTags> per_tag;  ///< indexed by Tag
  TagStats all;                            ///< every sample together
  /// GenEval's overall score: the mean of the per-tag accuracies over the tags present.
  double overall() const noexcept;
  /// One-line JSON: {"overall": ..., "accuracy": ..., "strict_accuracy": ..., "clean_accuracy": ..., "mean_reward": ...,
  /// "n": ..., "tags": {"single_object": {"n": ..., "accuracy": ..., ...}, ...}} (tags with n > 0).
  std::string to_json() const;
};

/// Scores every (metadata, grid) pair and gathers the counts per tag.
EvalReport evaluate(const std::vector<Sample>& samples, const ScoreOptions& options = {});
/// The same over parallel lists; fails when their sizes differ.
status evaluate(const std::vector<Metadata>& metas, const std::vector<Grid>& grids, const ScoreOptions& options,
                EvalReport& out);

// =============================================================================================
// Pictures
// =============================================================================================

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;
  Image() = default;
  Image(int w, int h, Rgb fill = {});
  Rgb at(int x, int y) const {
    const std::size_t i = (static_cast<std::size_t>(y) * width + x) * 3;
    return Rgb{rgb[i], rgb[i + 1], rgb[i + 2]};
  }
  void set(int x, int y, Rgb c) {
    const std::size_t i = (static_cast<std::size_t>(y) * width + x) * 3;
    rgb[i] = c.r; rgb[i + 1] = c.g; rgb[i + 2] = c.b;
  }
};

/// Paints each token as a flat `patch` x `patch` square of token_rgb(token): the image is
/// (width * patch) x (height * patch) pixels. patch < 1 is taken as 1.
Image decode(const Grid& grid, int patch = 8);

/// The detector's view of a picture: the image is cut into `height` x `width` equal cells
/// (its sides must be multiples of them), each cell's mean colour is taken, and the cell
/// becomes the token whose token_rgb() is nearest in squared RGB distance (the lower token on a
/// tie). decode(grid, patch) maps back to `grid` for any patch. This is how a model that draws
/// pixels (a VQ decoder's pictures) is scored by the task. Fails on a size mismatch.
status grid_of_image(const Image& image, int height, int width, Grid& out);

/// A mark drawn around a tile of a sample sheet.
enum class Mark : std::uint8_t { none, correct, incorrect };

/// Layout of a sample sheet.
struct SheetOptions {
  int patch = 8;        ///< pixels per token
  int columns = 0;      ///< tiles per row; 0 = ceil(sqrt(n))
  int gap = 4;          ///< pixels between tiles and around the sheet
  int border = 2;       ///< pixels of the frame around each tile (green correct, red incorrect,
                        ///< the gap colour for Mark::none)
  Rgb background{255, 255, 255};  ///< gap colour
};

/// Tiles images of possibly different sizes on a `columns`-wide lattice (cells as large as the
/// largest image), `gap` pixels apart, each framed by `border` pixels of its mark's colour
/// (`marks` empty or one per image). An empty list gives a gap-sized blank image.
Image tile(const std::vector<Image>& images, const std::vector<Mark>& marks, const SheetOptions& options = {});
/// decode() every grid at options.patch, then tile().
Image sample_sheet(const std::vector<Grid>& grids, const std::vector<Mark>& marks = {},
                   const SheetOptions& options = {});
/// Mark::correct / Mark::incorrect from ScoreResult::correct.
Mark mark_of(const ScoreResult& result) noexcept;

/// Writes an 8-bit RGB PNG (libpng), atomically (janus::write_file_atomic: temporary file, fsync,
/// rename). Fails on an empty image or an I/O error.
status write_png(const std::string& path, const Image& image);
/// The PNG file's bytes of `image` (what write_png writes).
status encode_png(const Image& image, std::string& out);
/// Reads a PNG of any colour type into 8-bit RGB (libpng).
status read_png(const std::string& path, Image& out);

}  // namespace shapes
