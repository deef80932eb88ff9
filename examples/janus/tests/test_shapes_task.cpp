// Tests of task "shapes": codebook, shapes, detector, GenEval scoring rules on hand-made grids
// for every tag (passing and failing), the generator against its own prompts, the prompt space
// and its split, JSONL, the tokenizer, PNG output and determinism.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <png.h>
#include <unistd.h>

#include "shapes_task.hpp"

namespace fs = std::filesystem;
using namespace shapes;

namespace {

// Golden values of the generator's stream (seed 42, items 0..7 at 16 x 16).
constexpr std::uint64_t kGoldenHash = 6663898661083815230ULL;
constexpr const char* kGoldenPrompts =
    "a photo of a circle|a photo of a square above a triangle|a photo of a purple circle and a green square|"
    "a photo of a red triangle|a photo of a square and a circle|a photo of four triangles|"
    "a photo of a square and a circle|a photo of a circle and a square|";

constexpr Shape kShapes[] = {Shape::square, Shape::circle, Shape::triangle};

// Draws `shape` of `size` at (top, left) in colour `c` (mid shade).
void put(Grid& g, Shape shape, int size, int top, int left, Color c, int shade = 1) {
  draw_shape(g, shape, size, top, left, color_token(c, shade));
}

std::string grid_text(const Grid& g) {
  std::string s;
  for (int y = 0; y < g.height; ++y) {
    for (int x = 0; x < g.width; ++x) {
      const int t = g.at(y, x);
      s += is_background(t) ? '.' : static_cast<char>('A' + (t - kNumBackground) / kShadesPerColor);
    }
    s += '\n';
  }
  return s;
}

fs::path temp_dir() {
  const fs::path p = fs::temp_directory_path() / ("gcpo_shapes_test_" + std::to_string(::getpid()));
  fs::create_directories(p);
  return p;
}

std::uint64_t fnv1a(const std::vector<int>& v, std::uint64_t h = 1469598103934665603ULL) {
  for (int x : v) {
    h ^= static_cast<std::uint64_t>(x);
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

// =============================================================================================

TEST_CASE("codebook layout", "[shapes]") {
  CHECK(codebook_size() == 22);
  CHECK(kCodebookSize == 22);
  for (int t = 0; t < kNumBackground; ++t) {
    CHECK(is_background(t));
    CHECK_FALSE(token_color(t).has_value());
  }
  CHECK(color_token(Color::red, 0) == 4);
  CHECK(color_token(Color::purple, 2) == 21);
  for (int c = 0; c < kNumColors; ++c)
    for (int s = 0; s < kShadesPerColor; ++s) {
      const int t = color_token(static_cast<Color>(c), s);
      CHECK_FALSE(is_background(t));
      REQUIRE(token_color(t).has_value());
      CHECK(*token_color(t) == static_cast<Color>(c));
    }
  CHECK(is_background(-1));
  CHECK(is_background(22));
  CHECK(token_rgb(99) == Rgb{255, 0, 255});
  // Every token has its own colour.
  std::set<std::tuple<int, int, int>> seen;
  for (int t = 0; t < kCodebookSize; ++t) seen.insert({token_rgb(t).r, token_rgb(t).g, token_rgb(t).b});
  CHECK(seen.size() == static_cast<std::size_t>(kCodebookSize));
}

TEST_CASE("names round trip", "[shapes]") {
  for (Shape s : kShapes) CHECK(shape_from_name(name(s)) == s);
  for (int c = 0; c < kNumColors; ++c) CHECK(color_from_name(name(static_cast<Color>(c))) == static_cast<Color>(c));
  for (int t = 0; t < kNumTags; ++t) CHECK(tag_from_name(name(static_cast<Tag>(t))) == static_cast<Tag>(t));
  for (int r = 0; r < kNumRelations; ++r)
    CHECK(relation_from_name(name(static_cast<Relation>(r))) == static_cast<Relation>(r));
  CHECK_FALSE(shape_from_name("dog"));
  CHECK_FALSE(color_from_name("pink"));
  CHECK(std::string(name(Relation::left_of)) == "left of");
  CHECK(std::string(plural(Shape::triangle)) == "triangles");
}

TEST_CASE("shape masks have the documented fill ratios", "[shapes]") {
  CHECK(shape_mask(Shape::square, 3).area() == 9);
  CHECK(shape_mask(Shape::circle, 4).area() == 12);
  CHECK(shape_mask(Shape::circle, 5).area() == 21);
  CHECK(shape_mask(Shape::circle, 7).area() == 37);
  CHECK(shape_mask(Shape::circle, 8).area() == 52);
  const Mask t3 = shape_mask(Shape::triangle, 3);
  CHECK(t3.width == 5);
  CHECK(t3.height == 3);
  CHECK(t3.area() == 9);
  CHECK(t3.at(0, 2));
  CHECK_FALSE(t3.at(0, 1));
  CHECK(t3.at(2, 0));
  CHECK(t3.at(2, 4));
  CHECK(shape_mask(Shape::square, 0).area() == 0);
}

TEST_CASE("drawable sizes per grid", "[shapes]") {
  const TaskConfig c16;
  CHECK(drawable_sizes(Shape::square, c16) == std::vector<int>{2, 3, 4, 5});
  CHECK(drawable_sizes(Shape::circle, c16) == std::vector<int>{4, 5});
  CHECK(drawable_sizes(Shape::triangle, c16) == std::vector<int>{2, 3});
  TaskConfig c8;
  c8.height = c8.width = 8;
  CHECK(drawable_sizes(Shape::square, c8) == std::vector<int>{2, 3, 4});
  CHECK(drawable_sizes(Shape::circle, c8) == std::vector<int>{4});
  CHECK(drawable_sizes(Shape::triangle, c8) == std::vector<int>{2});
  TaskConfig c32;
  c32.height = c32.width = 32;
  CHECK(drawable_sizes(Shape::circle, c32) == std::vector<int>{4, 5, 7, 8});
  CHECK(drawable_sizes(Shape::triangle, c32) == std::vector<int>{2, 3, 4});
}

TEST_CASE("every drawable shape is detected as its class", "[shapes][detector]") {
  for (int side : {8, 16, 32}) {
    TaskConfig cfg;
    cfg.height = cfg.width = side;
    for (Shape s : kShapes)
      for (int size : drawable_sizes(s, cfg))
        for (int c = 0; c < kNumColors; ++c)
          for (int shade = 0; shade < kShadesPerColor; ++shade) {
            Grid g(side, side, background_token(2));
            put(g, s, size, 1, 1, static_cast<Color>(c), shade);
            const Detections d = detect(g);
            INFO("grid " << side << " " << name(s) << " size " << size << "\n" << grid_text(g));
            REQUIRE(d.components.size() == 1);
            const Component& k = d.components[0];
            REQUIRE(k.shape.has_value());
            CHECK(*k.shape == s);
            CHECK(k.color == static_cast<Color>(c));
            CHECK(k.area == shape_mask(s, size).area());
            CHECK(k.box == Box{1, 1, 1 + shape_mask(s, size).width, 1 + shape_mask(s, size).height});
          }
  }
}

TEST_CASE("classify_shape thresholds", "[shapes][detector]") {
  // Square, fill 1; a 4x4 square missing one corner is still a square (fill 0.94).
  CHECK(classify_shape(Box{0, 0, 3, 3}, 9, 15) == Shape::square);
  CHECK(classify_shape(Box{0, 0, 4, 4}, 15, 7) == Shape::square);
  // A bar is nothing.
  CHECK_FALSE(classify_shape(Box{0, 0, 6, 2}, 12, 15));
  // Circle-like fill with covered corners is nothing (a square with two corners cut).
  CHECK_FALSE(classify_shape(Box{0, 0, 4, 4}, 14, 3));
  CHECK(classify_shape(Box{0, 0, 4, 4}, 12, 0) == Shape::circle);
  // Triangle needs a base (two corners of one side) or three corners (a right triangle).
  CHECK(classify_shape(Box{0, 0, 5, 3}, 9, 4 | 8) == Shape::triangle);
  CHECK(classify_shape(Box{0, 0, 4, 4}, 10, 1 | 4 | 8) == Shape::triangle);
  CHECK_FALSE(classify_shape(Box{0, 0, 3, 3}, 5, 0));        // a plus sign
  CHECK_FALSE(classify_shape(Box{0, 0, 4, 4}, 8, 1 | 8));    // a diagonal
  CHECK_FALSE(classify_shape(Box{0, 0, 4, 4}, 4, 1 | 2));    // too sparse
}

TEST_CASE("detector: 4-connectivity, minimum size, colour, centroid, order", "[shapes][detector]") {
  Grid g(10, 10);
  // Two 2x2 squares touching only diagonally: two components under 4-connectivity.
  put(g, Shape::square, 2, 0, 0, Color::red);
  put(g, Shape::square, 2, 2, 2, Color::blue);
  // A 3-cell noise blob: below the minimum area.
  g.at(8, 0) = g.at(8, 1) = g.at(9, 0) = color_token(Color::green, 0);
  // A 3x3 square, 5 yellow cells + 4 orange cells: yellow by majority.
  put(g, Shape::square, 3, 6, 6, Color::orange);
  for (int i : {0, 2, 4, 6, 8}) g.at(6 + i / 3, 6 + i % 3) = color_token(Color::yellow, 2);
  const Detections d = detect(g);
  CHECK(d.small_components == 1);
  REQUIRE(d.components.size() == 3);
  REQUIRE(d.count(Shape::square) == 3);
  // Order: largest first, then top row, then left column.
  CHECK(d.get(Shape::square, 0).area == 9);
  CHECK(d.get(Shape::square, 0).color == Color::yellow);
  CHECK(d.get(Shape::square, 0).color_votes[static_cast<int>(Color::orange)] == 4);
  CHECK(d.get(Shape::square, 0).cx == Approx(7.5));
  CHECK(d.get(Shape::square, 0).cy == Approx(7.5));
  CHECK(d.get(Shape::square, 1).color == Color::red);
  CHECK(d.get(Shape::square, 1).cx == Approx(1.0));
  CHECK(d.get(Shape::square, 2).color == Color::blue);
  CHECK(d.count(Shape::circle) == 0);

  DetectorOptions o;
  o.min_area = 3;
  CHECK(detect(g, o).components.size() == 4);  // the noise blob now counts (as no class: 3 of 4 cells, L)
  o.max_per_class = 2;
  CHECK(detect(g, o).count(Shape::square) == 2);
  // Out-of-range tokens are background.
  Grid h(4, 4, 99);
  CHECK(detect(h).components.empty());
}

TEST_CASE("detector caps detections at 16 per class", "[shapes][detector]") {
  Grid g(32, 32);
  int n = 0;
  for (int y = 0; y + 2 <= 32; y += 3)
    for (int x = 0; x + 2 <= 32; x += 3, ++n) put(g, Shape::square, 2, y, x, Color::green);
  REQUIRE(n > 16);
  const Detections d = detect(g);
  CHECK(static_cast<int>(d.components.size()) == n);
  CHECK(d.count(Shape::square) == 16);
}

TEST_CASE("relative position as GenEval computes it", "[shapes][scorer]") {
  const Box a{0, 0, 2, 2}, b{5, 0, 7, 2};
  CHECK(in_relation(a, Relation::left_of, b));
  CHECK(in_relation(b, Relation::right_of, a));
  CHECK_FALSE(in_relation(a, Relation::above, b));
  const Box c{0, 6, 2, 8};
  CHECK(in_relation(a, Relation::above, c));
  CHECK(in_relation(c, Relation::below, a));
  // Same centre: no relation.
  const auto none = relations(Box{0, 0, 4, 4}, Box{1, 1, 3, 3});
  for (bool r : none) CHECK_FALSE(r);
  // Diagonal at 45 degrees: dx = dy = (|o| - margin)/|o| sqrt(1/2) < 0.71 -> both hold when > 0.5.
  const auto diag = relations(Box{0, 0, 2, 2}, Box{10, 10, 12, 12});
  CHECK(diag[static_cast<int>(Relation::left_of)]);
  CHECK(diag[static_cast<int>(Relation::above)]);
  // Overlap of 0.1*(wA + wB) is eaten by the margin: offset 0.8, widths 4 + 4 -> revised 0.
  CHECK_FALSE(in_relation(Box{0, 0, 4, 4}, Relation::left_of, Box{1, 0, 5, 4}));
  // Mostly vertical offset: not left of even though a is left.
  CHECK_FALSE(in_relation(Box{0, 0, 2, 2}, Relation::left_of, Box{1, 10, 3, 12}));
}

// ---- the scorer, tag by tag -----------------------------------------------------------------

TEST_CASE("score single_object", "[shapes][scorer]") {
  const Metadata m = make_single_object(Shape::circle);
  Grid g(16, 16);
  SECTION("pass") {
    put(g, Shape::circle, 5, 3, 3, Color::green);
    const ScoreResult r = score(g, m);
    CHECK(r.correct);
    CHECK(r.strict_correct);
    CHECK(r.reward == 1.0);
    CHECK(r.partial == 1.0);
    CHECK(r.reason.empty());
    REQUIRE(r.include.size() == 1);
    CHECK(r.include[0].count_check == Check::passed);
    CHECK(r.include[0].color_check == Check::not_asked);
  }
  SECTION("other classes are allowed by GenEval, not by the clean rule") {
    put(g, Shape::circle, 5, 3, 3, Color::green);
    CHECK(score(g, m).clean_correct);  // the circle alone
    put(g, Shape::square, 3, 10, 10, Color::red);
    const ScoreResult r = score(g, m);
    CHECK(r.correct);
    CHECK(r.strict_correct);
    CHECK_FALSE(r.clean_correct);
    ScoreOptions o;
    o.mode = ScoreMode::clean;
    CHECK(score(g, m, o).reward == 0.0);
    o.mode = ScoreMode::binary;
    CHECK(score(g, m, o).reward == 1.0);
  }
  SECTION("a stray token below min_area breaks the clean rule only") {
    put(g, Shape::circle, 5, 3, 3, Color::green);
    g.at(14, 14) = color_token(Color::red, 0);
    const ScoreResult r = score(g, m);
    CHECK(r.correct);
    CHECK_FALSE(r.clean_correct);
  }
  SECTION("two circles: binary passes, strict does not") {
    put(g, Shape::circle, 5, 0, 0, Color::green);
    put(g, Shape::circle, 4, 10, 10, Color::green);
    const ScoreResult r = score(g, m);
    CHECK(r.correct);
    CHECK_FALSE(r.strict_correct);
    CHECK(r.partial == Approx(0.0));  // 1 - |1 - 2| / 1
    ScoreOptions o;
    o.mode = ScoreMode::strict;
    CHECK(score(g, m, o).reward == 0.0);
  }
  SECTION("missing object") {
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK(r.reward == 0.0);
    CHECK(r.include[0].count_check == Check::failed);
    CHECK(r.include[0].found == 0);
    CHECK(r.reason == "expected circle>=1, found 0");
  }
  SECTION("wrong class") {
    put(g, Shape::triangle, 3, 3, 3, Color::green);
    CHECK_FALSE(score(g, m).correct);
  }
}

TEST_CASE("score two_object", "[shapes][scorer]") {
  const Metadata m = make_two_object(Shape::square, Shape::triangle);
  Grid g(16, 16, background_token(1));
  put(g, Shape::square, 3, 2, 2, Color::blue);
  SECTION("pass") {
    put(g, Shape::triangle, 3, 10, 6, Color::yellow);
    const ScoreResult r = score(g, m);
    CHECK(r.correct);
    CHECK(r.strict_correct);
    CHECK(r.clean_correct);
    CHECK(r.partial == 1.0);
  }
  SECTION("missing object") {
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK(r.include[0].count_check == Check::passed);
    CHECK(r.include[1].count_check == Check::failed);
    CHECK(r.partial == Approx(0.5));
  }
  SECTION("touching objects merge into one blob") {
    // The triangle's base row touches the square's right edge: one component, neither class.
    put(g, Shape::triangle, 2, 3, 5, Color::yellow);
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
  }
}

TEST_CASE("score counting", "[shapes][scorer]") {
  const Metadata m = make_counting(Shape::triangle, 3);
  REQUIRE(m.exclude.size() == 1);
  Grid g(16, 16);
  put(g, Shape::triangle, 2, 0, 0, Color::red);
  put(g, Shape::triangle, 3, 0, 8, Color::blue);
  SECTION("wrong count: two of three") {
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK_FALSE(r.strict_correct);
    CHECK(r.partial == Approx(1.0 - 1.0 / 3.0));
    CHECK(r.include[0].found == 2);
  }
  put(g, Shape::triangle, 2, 6, 0, Color::green);
  SECTION("pass: exactly three, any colours") {
    const ScoreResult r = score(g, m);
    CHECK(r.correct);
    CHECK(r.strict_correct);
    CHECK(r.partial == 1.0);
    REQUIRE(r.exclude.size() == 1);
    CHECK(r.exclude[0].passed);
  }
  SECTION("other classes do not count") {
    put(g, Shape::square, 2, 12, 12, Color::green);
    CHECK(score(g, m).correct);
  }
  SECTION("extra excluded object: four of three") {
    put(g, Shape::triangle, 2, 12, 12, Color::green);
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK_FALSE(r.strict_correct);
    CHECK(r.include[0].count_check == Check::passed);  // >= 3 holds
    CHECK_FALSE(r.exclude[0].passed);
    CHECK(r.exclude[0].found == 4);
    CHECK(r.reason == "expected triangle<4, found 4");
    CHECK(r.partial == Approx(1.0 - 1.0 / 3.0));
  }
}

TEST_CASE("score colors", "[shapes][scorer]") {
  const Metadata m = make_colors(Shape::square, Color::orange);
  CHECK(m.prompt == "a photo of an orange square");
  Grid g(16, 16);
  SECTION("pass, any shade") {
    for (int shade = 0; shade < kShadesPerColor; ++shade) {
      Grid h(16, 16);
      put(h, Shape::square, 4, 5, 5, Color::orange, shade);
      CHECK(score(h, m).correct);
    }
  }
  SECTION("wrong colour") {
    put(g, Shape::square, 4, 5, 5, Color::yellow);
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK_FALSE(r.strict_correct);
    CHECK(r.include[0].color_check == Check::failed);
    CHECK(r.include[0].with_color == 0);
    CHECK(r.partial == Approx(0.5));  // count term 1, colour term 0
    CHECK(r.reason == "expected orange square>=1, found 0 orange; and 1 yellow");
  }
  SECTION("only the first detection is checked (the largest)") {
    put(g, Shape::square, 4, 0, 0, Color::yellow);
    put(g, Shape::square, 2, 10, 10, Color::orange);
    CHECK_FALSE(score(g, m).correct);
    Grid h(16, 16);
    put(h, Shape::square, 4, 0, 0, Color::orange);
    put(h, Shape::square, 2, 10, 10, Color::yellow);
    const ScoreResult r = score(h, m);
    CHECK(r.correct);
    CHECK_FALSE(r.strict_correct);  // two squares where one was asked
  }
  SECTION("missing object") {
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK(r.include[0].color_check == Check::skipped);
    CHECK(r.partial == Approx(0.0));  // count term 0, and a 0 for the colour
  }
}

TEST_CASE("score position", "[shapes][scorer]") {
  const Metadata m = make_position(Shape::triangle, Relation::left_of, Shape::circle);
  CHECK(m.prompt == "a photo of a triangle left of a circle");
  REQUIRE(m.include.size() == 2);
  CHECK(m.include[0].cls == Shape::circle);
  CHECK(m.include[1].cls == Shape::triangle);
  Grid g(16, 16);
  SECTION("pass") {
    put(g, Shape::triangle, 3, 6, 0, Color::red);
    put(g, Shape::circle, 5, 5, 10, Color::blue);
    const ScoreResult r = score(g, m);
    CHECK(r.correct);
    CHECK(r.strict_correct);
    CHECK(r.partial == 1.0);
    CHECK(r.include[1].position_check == Check::passed);
  }
  SECTION("wrong position") {
    put(g, Shape::triangle, 3, 6, 10, Color::red);
    put(g, Shape::circle, 5, 5, 0, Color::blue);
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK_FALSE(r.strict_correct);
    CHECK(r.include[1].position_check == Check::failed);
    CHECK(r.reason == "expected triangle left of target, found right of target");
    CHECK(r.partial == Approx(2.0 / 3.0));  // count 1, count 1, position 0
    ScoreOptions o;
    o.partial_as_reward_server = true;
    CHECK(score(g, m, o).partial == Approx(3.0 / 4.0));  // the server adds a 1 after the 0
  }
  SECTION("above instead of left of") {
    put(g, Shape::triangle, 3, 0, 5, Color::red);
    put(g, Shape::circle, 5, 10, 5, Color::blue);
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK(r.reason == "expected triangle left of target, found above target");
    CHECK(score(g, make_position(Shape::triangle, Relation::above, Shape::circle)).correct);
  }
  SECTION("missing reference object") {
    put(g, Shape::triangle, 3, 6, 0, Color::red);
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK(r.include[0].count_check == Check::failed);
    CHECK(r.include[1].position_check == Check::failed);
    CHECK(r.reason == "expected circle>=1, found 0\nno target for triangle to be left of");
  }
  SECTION("missing object") {
    put(g, Shape::circle, 5, 5, 10, Color::blue);
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK(r.include[1].count_check == Check::failed);
    CHECK(r.include[1].position_check == Check::skipped);
  }
}

TEST_CASE("score color_attr", "[shapes][scorer]") {
  const Metadata m = make_color_attr(Shape::square, Color::blue, Shape::circle, Color::yellow);
  CHECK(m.prompt == "a photo of a blue square and a yellow circle");
  Grid g(16, 16);
  SECTION("pass") {
    put(g, Shape::square, 3, 1, 1, Color::blue);
    put(g, Shape::circle, 5, 9, 9, Color::yellow);
    CHECK(score(g, m).correct);
    CHECK(score(g, m).strict_correct);
  }
  SECTION("colours swapped") {
    put(g, Shape::square, 3, 1, 1, Color::yellow);
    put(g, Shape::circle, 5, 9, 9, Color::blue);
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK(r.include[0].color_check == Check::failed);
    CHECK(r.include[1].color_check == Check::failed);
    CHECK(r.partial == Approx(0.5));  // 1, 0, 1, 0
  }
  SECTION("one colour wrong") {
    put(g, Shape::square, 3, 1, 1, Color::blue);
    put(g, Shape::circle, 5, 9, 9, Color::green);
    const ScoreResult r = score(g, m);
    CHECK_FALSE(r.correct);
    CHECK(r.include[0].color_check == Check::passed);
    CHECK(r.include[1].color_check == Check::failed);
    CHECK(r.partial == Approx(0.75));
  }
  SECTION("missing object") {
    put(g, Shape::square, 3, 1, 1, Color::blue);
    CHECK_FALSE(score(g, m).correct);
  }
}

TEST_CASE("score modes and invalid metadata", "[shapes][scorer]") {
  Metadata m = make_counting(Shape::square, 2);
  Grid g(16, 16);
  put(g, Shape::square, 2, 0, 0, Color::red);
  put(g, Shape::square, 2, 0, 5, Color::red);
  put(g, Shape::square, 2, 0, 10, Color::red);
  ScoreOptions o;
  CHECK(score(g, m, o).reward == 0.0);  // exclude: fewer than 3
  o.mode = ScoreMode::partial;
  CHECK(score(g, m, o).reward == Approx(0.5));
  m.exclude.clear();
  o.mode = ScoreMode::binary;
  CHECK(score(g, m, o).reward == 1.0);  // more than asked is fine without an exclude clause
  o.mode = ScoreMode::strict;
  CHECK(score(g, m, o).reward == 0.0);
  // Partial can go below zero, as the server's formula does: 1 - |1 - 3| / 1.
  o.mode = ScoreMode::partial;
  CHECK(score(g, make_single_object(Shape::square), o).reward == Approx(-1.0));

  Metadata bad = make_position(Shape::square, Relation::above, Shape::circle);
  bad.include[1].position->target = 1;  // itself
  const ScoreResult r = score(g, bad);
  CHECK_FALSE(r.correct);
  CHECK(r.reward == 0.0);
  CHECK(r.reason.find("invalid metadata") == 0);
}

// ---- prompts, metadata, split ----------------------------------------------------------------

TEST_CASE("prompt texts follow GenEval's templates", "[shapes][prompts]") {
  CHECK(make_single_object(Shape::square).prompt == "a photo of a square");
  CHECK(make_two_object(Shape::square, Shape::circle).prompt == "a photo of a square and a circle");
  CHECK(make_counting(Shape::square, 2).prompt == "a photo of two squares");
  CHECK(make_counting(Shape::circle, 4).prompt == "a photo of four circles");
  CHECK(make_colors(Shape::circle, Color::red).prompt == "a photo of a red circle");
  CHECK(make_position(Shape::triangle, Relation::right_of, Shape::square).prompt ==
        "a photo of a triangle right of a square");
  CHECK(make_color_attr(Shape::triangle, Color::orange, Shape::circle, Color::purple).prompt ==
        "a photo of an orange triangle and a purple circle");
  for (const auto& m : enumerate_prompts()) CHECK(prompt_text(m) == m.prompt);
}

TEST_CASE("the prompt space", "[shapes][prompts]") {
  const auto all = enumerate_prompts();
  CHECK(all.size() == 240);
  std::array<int, kNumTags> per{};
  std::set<std::string> texts;
  for (const auto& m : all) {
    per[static_cast<int>(m.tag)]++;
    texts.insert(m.prompt);
    CHECK(validate(m).ok());
  }
  CHECK(texts.size() == all.size());
  CHECK(per == std::array<int, kNumTags>{3, 6, 9, 18, 24, 180});
  CHECK(task_prompts(TaskConfig{}).size() == 240);

  TaskConfig c8;
  c8.height = c8.width = 8;
  const auto small = task_prompts(c8);
  std::set<std::string> feasible;
  for (const auto& m : small) feasible.insert(m.prompt);
  CHECK(feasible.count("a photo of four squares") == 1);
  CHECK(feasible.count("a photo of four triangles") == 1);
  CHECK(feasible.count("a photo of two circles") == 1);
  CHECK(feasible.count("a photo of three circles") == 0);  // d = 4 circles: only two fit in 8 x 8
  CHECK(feasible.count("a photo of four circles") == 0);
  CHECK(feasible.count("a photo of a circle left of a triangle") == 1);
  CHECK(small.size() == 238);
}

TEST_CASE("train and held-out prompts do not overlap", "[shapes][prompts]") {
  for (int side : {8, 16}) {
    TaskConfig cfg;
    cfg.height = cfg.width = side;
    PromptSplit a, b, c;
    REQUIRE(split_prompts(cfg, SplitOptions{}, a).ok());
    REQUIRE(split_prompts(cfg, SplitOptions{}, b).ok());
    SplitOptions other;
    other.seed = 7;
    REQUIRE(split_prompts(cfg, other, c).ok());
    CHECK(a.train == b.train);
    CHECK(a.heldout == b.heldout);
    CHECK(a.heldout != c.heldout);
    std::set<std::string> train;
    for (const auto& m : a.train) train.insert(m.prompt);
    for (const auto& m : a.heldout) CHECK(train.count(m.prompt) == 0);
    CHECK(a.train.size() + a.heldout.size() == task_prompts(cfg).size());
    std::array<int, kNumTags> held{}, kept{};
    for (const auto& m : a.heldout) held[static_cast<int>(m.tag)]++;
    for (const auto& m : a.train) kept[static_cast<int>(m.tag)]++;
    for (int t = 0; t < kNumTags; ++t) {
      CHECK(held[t] >= 1);
      CHECK(kept[t] >= 1);
    }
    if (side == 16) {
      CHECK(held == std::array<int, kNumTags>{1, 1, 2, 4, 5, 36});
    }
  }
  PromptSplit none;
  SplitOptions zero;
  zero.heldout_fraction = 0;
  REQUIRE(split_prompts(TaskConfig{}, zero, none).ok());
  CHECK(none.heldout.empty());
  SplitOptions bad;
  bad.heldout_fraction = 1.0;
  CHECK_FALSE(split_prompts(TaskConfig{}, bad, none).ok());
}

TEST_CASE("pick_prompt draws tags by weight, deterministically", "[shapes][prompts]") {
  const auto pool = enumerate_prompts();
  std::array<int, kNumTags> per{};
  for (std::uint64_t i = 0; i < 6000; ++i) {
    std::size_t p = 0;
    REQUIRE(pick_prompt(pool, 3, i, p).ok());
    std::size_t q = 0;
    REQUIRE(pick_prompt(pool, 3, i, q).ok());
    CHECK(p == q);
    per[static_cast<int>(pool[p].tag)]++;
  }
  for (int t = 0; t < kNumTags; ++t) CHECK(std::abs(per[t] - 1000) < 150);
  TagWeights w{0, 0, 1, 0, 0, 0};
  for (std::uint64_t i = 0; i < 50; ++i) {
    std::size_t p = 0;
    REQUIRE(pick_prompt(pool, 3, i, p, w).ok());
    CHECK(pool[p].tag == Tag::counting);
  }
  std::size_t p = 0;
  CHECK_FALSE(pick_prompt({}, 0, 0, p).ok());
  CHECK_FALSE(pick_prompt(pool, 0, 0, p, TagWeights{0, 0, 0, 0, 0, 0}).ok());
}

// ---- the generator against its own prompts -----------------------------------------------------

TEST_CASE("generated images satisfy their prompts (every prompt, many seeds)", "[shapes][generator]") {
  for (int side : {8, 16}) {
    TaskConfig cfg;
    cfg.height = cfg.width = side;
    const auto prompts = task_prompts(cfg);
    std::array<int, kNumTags> per{};
    int rendered = 0;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      const Metadata& m = prompts[i];
      // Every prompt with 5 seeds, and the small tags with 60.
      const int seeds = m.tag == Tag::color_attr ? 5 : 60;
      for (int s = 0; s < seeds; ++s) {
        Grid g;
        std::vector<PlacedObject> objs;
        const status st = render(m, cfg, 1000 * i + s, g, &objs);
        INFO(side << "x" << side << " \"" << m.prompt << "\" seed " << 1000 * i + s << ": " << st.message());
        REQUIRE(st.ok());
        REQUIRE(g.height == side);
        REQUIRE(g.width == side);
        const ScoreResult r = score(g, m);
        INFO(grid_text(g) << r.reason);
        CHECK(r.correct);
        CHECK(r.strict_correct);
        CHECK(r.partial == 1.0);
        int asked = 0;
        for (const auto& c : m.include) asked += c.count;
        CHECK(static_cast<int>(objs.size()) == asked);
        // The detector sees exactly the drawn objects.
        const Detections d = detect(g);
        CHECK(static_cast<int>(d.components.size()) == asked);
        CHECK(d.small_components == 0);
        per[static_cast<int>(m.tag)]++;
        ++rendered;
      }
    }
    for (int t = 0; t < kNumTags; ++t) CHECK(per[t] > 0);
    CHECK(rendered > 1000);
  }
}

TEST_CASE("render rejects what it cannot draw", "[shapes][generator]") {
  Grid g;
  TaskConfig c8;
  c8.height = c8.width = 8;
  CHECK_FALSE(render(make_counting(Shape::circle, 4), c8, 1, g).ok());
  Metadata impossible = make_counting(Shape::square, 3);
  impossible.exclude[0].count = 2;
  CHECK_FALSE(render(impossible, TaskConfig{}, 1, g).ok());
  TaskConfig tiny;
  tiny.height = 3;
  CHECK_FALSE(render(make_single_object(Shape::square), tiny, 1, g).ok());
  Metadata empty;
  CHECK_FALSE(render(empty, TaskConfig{}, 1, g).ok());
}

TEST_CASE("generator is deterministic for a seed", "[shapes][generator][determinism]") {
  const auto pool = enumerate_prompts();
  std::vector<Sample> a, b, c, tail;
  REQUIRE(make_samples(pool, TaskConfig{}, 42, 0, 64, a).ok());
  REQUIRE(make_samples(pool, TaskConfig{}, 42, 0, 64, b).ok());
  REQUIRE(make_samples(pool, TaskConfig{}, 43, 0, 64, c).ok());
  REQUIRE(make_samples(pool, TaskConfig{}, 42, 60, 4, tail).ok());
  int differ = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].meta == b[i].meta);
    CHECK(a[i].grid == b[i].grid);
    differ += a[i].grid != c[i].grid;
    CHECK(score(a[i].grid, a[i].meta).correct);
  }
  CHECK(differ > 60);
  // Item i of a stream does not depend on where the stream was started (resume).
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(tail[i].meta == a[60 + i].meta);
    CHECK(tail[i].grid == a[60 + i].grid);
  }
  // Golden values: the stream is the same from run to run and machine to machine
  // (std::mt19937_64 and this library's own draws only). Changing the generator changes them.
  std::uint64_t h = 1469598103934665603ULL;
  std::string prompts;
  for (std::size_t i = 0; i < 8; ++i) {
    h = fnv1a(a[i].grid.tokens, h);
    prompts += a[i].meta.prompt + "|";
  }
  INFO("hash " << h << " prompts " << prompts);
  CHECK(h == kGoldenHash);
  CHECK(prompts == kGoldenPrompts);
}

// ---- JSONL -----------------------------------------------------------------------------------

TEST_CASE("JSONL lines in GenEval's format", "[shapes][jsonl]") {
  CHECK(to_json_line(make_counting(Shape::circle, 2)) ==
        R"({"tag": "counting", "include": [{"class": "circle", "count": 2}], "exclude": [{"class": "circle", "count": 3}], "prompt": "a photo of two circles"})");
  CHECK(to_json_line(make_position(Shape::triangle, Relation::below, Shape::square)) ==
        R"({"tag": "position", "include": [{"class": "square", "count": 1}, {"class": "triangle", "count": 1, "position": ["below", 0]}], "prompt": "a photo of a triangle below a square"})");
  CHECK(to_json_line(make_color_attr(Shape::square, Color::blue, Shape::circle, Color::yellow)) ==
        R"({"tag": "color_attr", "include": [{"class": "square", "count": 1, "color": "blue"}, {"class": "circle", "count": 1, "color": "yellow"}], "prompt": "a photo of a blue square and a yellow circle"})");
  Metadata m;
  REQUIRE(from_json_line(R"({"prompt": "a photo of a red circle", "include": [{"count": 1, "class": "circle", "color": "red"}], "tag": "colors", "extra": 5})", m).ok());
  CHECK(m == make_colors(Shape::circle, Color::red));
}

TEST_CASE("JSONL round trip and errors", "[shapes][jsonl]") {
  const auto all = enumerate_prompts();
  const fs::path dir = temp_dir();
  const std::string path = (dir / "prompts.jsonl").string();
  REQUIRE(write_jsonl(path, all).ok());
  std::vector<Metadata> back;
  REQUIRE(read_jsonl(path, back).ok());
  CHECK(back == all);
  for (const auto& m : all) {
    Metadata one;
    REQUIRE(from_json_line(to_json_line(m), one).ok());
    CHECK(one == m);
  }

  Metadata m;
  status s = from_json_line(R"({"tag": "counting", "include": [{"class": "wine glass", "count": 2}], "prompt": "x"})", m);
  CHECK_FALSE(s.ok());
  CHECK(std::string(s.message()).find("include[0].class") != std::string::npos);
  CHECK(std::string(s.message()).find("wine glass") != std::string::npos);
  s = from_json_line(R"({"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "pink"}], "prompt": "x"})", m);
  CHECK(std::string(s.message()).find("pink") != std::string::npos);
  s = from_json_line(R"({"tag": "position", "include": [{"class": "circle", "count": 1, "position": ["left of", 0]}], "prompt": "x"})", m);
  CHECK(std::string(s.message()).find("include[0].position[1]") != std::string::npos);
  s = from_json_line(R"({"tag": "position", "include": [{"class": "circle", "count": 1}, {"class": "square", "count": 1, "position": ["near", 0]}], "prompt": "x"})", m);
  CHECK(std::string(s.message()).find("near") != std::string::npos);
  CHECK_FALSE(from_json_line(R"({"tag": "nope", "include": [], "prompt": "x"})", m).ok());
  CHECK_FALSE(from_json_line(R"({"tag": "colors", "include": [{"class": "circle", "count": 0}], "prompt": "x"})", m).ok());
  CHECK_FALSE(from_json_line(R"({"tag": "colors", "include": [], })", m).ok());
  CHECK_FALSE(from_json_line(R"({"tag": "colors", "include": []})", m).ok());

  {
    std::ofstream f(dir / "bad.jsonl");
    f << to_json_line(all[0]) << "\n\n" << "{not json\n";
  }
  std::vector<Metadata> partial;
  s = read_jsonl((dir / "bad.jsonl").string(), partial);
  CHECK_FALSE(s.ok());
  CHECK(std::string(s.message()).find("bad.jsonl:3:") != std::string::npos);
  CHECK(partial.empty());
  CHECK_FALSE(read_jsonl((dir / "missing.jsonl").string(), partial).ok());
  // A directory is not an empty JSONL file.
  fs::create_directories(dir / "folder.jsonl");
  s = read_jsonl((dir / "folder.jsonl").string(), partial);
  CHECK_FALSE(s.ok());
  CHECK(std::string(s.message()).find("is a directory") != std::string::npos);
  // Records that ask for nothing, or not for what their tag needs, are refused by file:line
  // (an empty include would score every image correct).
  const std::pair<const char*, const char*> wrong_shape[] = {
      {R"({"tag": "two_object", "include": [], "prompt": "a photo of a square and a circle"})", "`include` is empty"},
      {R"({"tag": "single_object", "include": [], "prompt": "a photo of a square"})", "`include` is empty"},
      {R"({"tag": "two_object", "include": [{"class": "square", "count": 1}], "prompt": "a photo of a square"})",
       "needs 2"},
      {R"({"tag": "colors", "include": [{"class": "square", "count": 1}], "prompt": "a photo of a square"})",
       "include[0].color"},
      {R"({"tag": "color_attr", "include": [{"class": "square", "count": 1, "color": "red"}, {"class": "circle", "count": 1}], "prompt": "x"})",
       "include[1].color"},
      {R"({"tag": "position", "include": [{"class": "square", "count": 1}, {"class": "circle", "count": 1}], "prompt": "x"})",
       "include[1].position"},
  };
  for (const auto& [line, why] : wrong_shape) {
    INFO(line);
    {
      std::ofstream f(dir / "shape.jsonl");
      f << to_json_line(all[0]) << "\n" << line << "\n";
    }
    s = read_jsonl((dir / "shape.jsonl").string(), partial);
    CHECK_FALSE(s.ok());
    CHECK(std::string(s.message()).find("shape.jsonl:2:") != std::string::npos);
    CHECK(std::string(s.message()).find(why) != std::string::npos);
    CHECK(partial.empty());
    REQUIRE(from_json_line(line, m).ok());  // well-formed JSON records ...
    CHECK_FALSE(validate(m).ok());          // ... that the task's rules refuse
    CHECK_FALSE(score(Detections{}, m).correct);
  }
  fs::remove_all(dir);
}

// ---- tokenizer -------------------------------------------------------------------------------

TEST_CASE("prompt tokenizer", "[shapes][tokenizer]") {
  const PromptTokenizer tok;
  CHECK(tok.vocab_size() == 29);
  CHECK(tok.vocabulary()[PromptTokenizer::pad_id] == "<pad>");
  CHECK(tok.vocabulary()[PromptTokenizer::bos_id] == "<bos>");
  CHECK(tok.vocabulary()[PromptTokenizer::boi_id] == "<boi>");
  CHECK(tok.word_id("a") == PromptTokenizer::num_special);
  CHECK(tok.word_id("<pad>") == -1);  // special names are not words
  std::set<std::string> words;
  for (const auto& m : enumerate_prompts()) {
    std::vector<int> ids;
    const status s = tok.encode(m.prompt, ids);
    INFO(m.prompt << ": " << s.message());
    REQUIRE(s.ok());
    CHECK(ids.front() == PromptTokenizer::bos_id);
    std::vector<int> words_only(ids.begin() + 1, ids.end());
    CHECK(tok.decode(words_only) == m.prompt);
    for (int id : words_only) words.insert(tok.vocabulary()[id]);
  }
  // Every word of the vocabulary is used by some prompt.
  CHECK(static_cast<int>(words.size()) == tok.vocab_size() - PromptTokenizer::num_special);

  std::vector<int> ids;
  REQUIRE(tok.encode("a photo of two squares", ids).ok());
  CHECK(ids == std::vector<int>{1, 5, 7, 8, 14, 20});
  EncodeOptions full;
  full.chat_template = true;
  full.add_boi = true;
  REQUIRE(tok.encode("  a photo\tof two squares ", ids, full).ok());
  CHECK(ids == std::vector<int>{1, 3, 5, 7, 8, 14, 20, 4, 2});
  CHECK(tok.decode(ids) == "<bos> <user> a photo of two squares <assistant> <boi>");
  EncodeOptions bare;
  bare.add_bos = false;
  REQUIRE(tok.encode("a red circle", ids, bare).ok());
  CHECK(ids.size() == 3);

  CHECK(tok.max_length() == 11);
  CHECK(tok.max_length(full) == 14);

  std::vector<int> keep{9, 9};
  const status s = tok.encode("a photo of a pink circle", ids = keep);
  CHECK_FALSE(s.ok());
  CHECK(std::string(s.message()).find("\"pink\"") != std::string::npos);
  CHECK(std::string(s.message()).find("word 4") != std::string::npos);
  CHECK(ids == keep);
  CHECK_FALSE(tok.encode("A photo of a circle", ids).ok());  // case-sensitive
  CHECK_FALSE(tok.encode("   ", ids).ok());
  CHECK(tok.decode({99}) == "<?>");
}

// ---- evaluation --------------------------------------------------------------------------------

TEST_CASE("held-out evaluation: per-tag accuracy", "[shapes][eval]") {
  PromptSplit split;
  REQUIRE(split_prompts(TaskConfig{}, SplitOptions{}, split).ok());
  std::vector<Sample> samples;
  for (std::size_t i = 0; i < split.heldout.size(); ++i) {
    Sample s;
    s.meta = split.heldout[i];
    REQUIRE(render(s.meta, TaskConfig{}, i, s.grid).ok());
    samples.push_back(s);
  }
  EvalReport rep = evaluate(samples);
  CHECK(rep.all.n == static_cast<int>(samples.size()));
  CHECK(rep.all.accuracy() == 1.0);
  CHECK(rep.overall() == 1.0);
  // Blank out the images of single_object and counting: those tags drop to 0.
  for (auto& s : samples)
    if (s.meta.tag == Tag::single_object || s.meta.tag == Tag::counting) s.grid = Grid(16, 16);
  rep = evaluate(samples);
  CHECK(rep.per_tag[static_cast<int>(Tag::single_object)].accuracy() == 0.0);
  CHECK(rep.per_tag[static_cast<int>(Tag::counting)].accuracy() == 0.0);
  CHECK(rep.per_tag[static_cast<int>(Tag::color_attr)].accuracy() == 1.0);
  CHECK(rep.overall() == Approx(4.0 / 6.0));
  const std::string j = rep.to_json();
  CHECK(j.find("\"overall\": 0.666667") != std::string::npos);
  CHECK(j.find("\"counting\": {\"n\": 2, \"accuracy\": 0,") != std::string::npos);

  std::vector<Metadata> metas;
  std::vector<Grid> grids;
  for (const auto& s : samples) {
    metas.push_back(s.meta);
    grids.push_back(s.grid);
  }
  EvalReport rep2;
  REQUIRE(evaluate(metas, grids, ScoreOptions{}, rep2).ok());
  CHECK(rep2.to_json() == j);
  grids.pop_back();
  CHECK_FALSE(evaluate(metas, grids, ScoreOptions{}, rep2).ok());
}

// ---- pictures --------------------------------------------------------------------------------

TEST_CASE("decode paints flat patches", "[shapes][png]") {
  Grid g(2, 3);
  g.at(1, 2) = color_token(Color::blue, 1);
  const Image img = decode(g, 4);
  CHECK(img.width == 12);
  CHECK(img.height == 8);
  CHECK(img.at(0, 0) == token_rgb(background_token(0)));
  CHECK(img.at(8, 4) == token_rgb(color_token(Color::blue, 1)));
  CHECK(img.at(11, 7) == token_rgb(color_token(Color::blue, 1)));
  CHECK(img.at(7, 7) == token_rgb(background_token(0)));
}

TEST_CASE("grid_of_image reads a painted grid back, through noise, from any patch size", "[shapes][png]") {
  std::mt19937 rng(7);
  for (int patch : {1, 2, 3, 16}) {
    Grid g(5, 7);
    for (auto& t : g.tokens) t = static_cast<int>(rng() % codebook_size());
    Grid back;
    REQUIRE(grid_of_image(decode(g, patch), 5, 7, back).ok());
    CHECK(back.tokens == g.tokens);
    CHECK(back.height == 5);
    CHECK(back.width == 7);
  }
  // A cell is its mean colour: a red cell with one stray pixel of another colour stays red, and
  // small per-pixel noise changes nothing.
  Grid g(4, 4);
  g.at(2, 1) = color_token(Color::red, 1);
  Image img = decode(g, 4);
  img.set(4, 8, token_rgb(color_token(Color::blue, 2)));
  for (auto& b : img.rgb) b = static_cast<std::uint8_t>(std::clamp(static_cast<int>(b) + static_cast<int>(rng() % 5) - 2, 0, 255));
  Grid back;
  REQUIRE(grid_of_image(img, 4, 4, back).ok());
  CHECK(back.tokens == g.tokens);
  // A grey between two background shades goes to one of them, never to a colour.
  Image grey(2, 2, Rgb{216, 216, 210});
  REQUIRE(grid_of_image(grey, 1, 1, back).ok());
  CHECK(is_background(back.tokens[0]));
  // Sizes that do not cut into equal cells are refused, naming the image.
  const gcpo::status bad = grid_of_image(decode(g, 4), 3, 4, back);
  CHECK_FALSE(bad.ok());
  CHECK(std::string(bad.message()).find("`image`") != std::string::npos);
  CHECK_FALSE(grid_of_image(decode(g, 4), 0, 4, back).ok());
}

TEST_CASE("sample sheet PNG is written and reads back", "[shapes][png]") {
  const auto pool = enumerate_prompts();
  std::vector<Sample> samples;
  REQUIRE(make_samples(pool, TaskConfig{}, 5, 0, 10, samples).ok());
  std::vector<Grid> grids;
  std::vector<Mark> marks;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    grids.push_back(samples[i].grid);
    marks.push_back(i % 3 == 0 ? Mark::incorrect : Mark::correct);
  }
  SheetOptions o;  // patch 8, gap 4, border 2, ceil(sqrt(10)) = 4 columns, 3 rows
  const Image sheet = sample_sheet(grids, marks, o);
  const int tile_px = 16 * 8 + 2 * 2;
  CHECK(sheet.width == 4 + 4 * (tile_px + 4));
  CHECK(sheet.height == 4 + 3 * (tile_px + 4));
  CHECK(sheet.at(0, 0) == Rgb{255, 255, 255});
  CHECK(sheet.at(4, 4) == Rgb{215, 30, 30});                      // tile 0: incorrect -> red frame
  CHECK(sheet.at(4 + tile_px + 4, 4) == Rgb{30, 170, 60});        // tile 1: correct -> green frame
  CHECK(sheet.at(6, 6) == token_rgb(grids[0].at(0, 0)));          // first pixel of image 0

  const fs::path dir = temp_dir();
  const std::string path = (dir / "sheet.png").string();
  REQUIRE(write_png(path, sheet).ok());
  // The signature and IHDR, read as bytes.
  std::ifstream f(path, std::ios::binary);
  std::vector<unsigned char> head(24);
  f.read(reinterpret_cast<char*>(head.data()), 24);
  REQUIRE(f.gcount() == 24);
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  CHECK(std::equal(sig, sig + 8, head.begin()));
  CHECK(std::string(head.begin() + 12, head.begin() + 16) == "IHDR");
  auto be32 = [&](int at) {
    return (static_cast<std::uint32_t>(head[at]) << 24) | (head[at + 1] << 16) | (head[at + 2] << 8) | head[at + 3];
  };
  CHECK(be32(16) == static_cast<std::uint32_t>(sheet.width));
  CHECK(be32(20) == static_cast<std::uint32_t>(sheet.height));
  // And with libpng directly.
  CHECK(png_sig_cmp(head.data(), 0, 8) == 0);
  Image back;
  REQUIRE(read_png(path, back).ok());
  CHECK(back.width == sheet.width);
  CHECK(back.height == sheet.height);
  CHECK(back.rgb == sheet.rgb);

  // One decoded grid, unframed.
  const std::string one = (dir / "one.png").string();
  REQUIRE(write_png(one, decode(grids[1], 8)).ok());
  REQUIRE(read_png(one, back).ok());
  CHECK(back.width == 128);
  CHECK(back.height == 128);

  CHECK_FALSE(write_png(path, Image{}).ok());
  CHECK_FALSE(write_png((dir / "no" / "such" / "dir.png").string(), sheet).ok());
  CHECK_FALSE(read_png((dir / "missing.png").string(), back).ok());
  if (const char* keep = std::getenv("GCPO_SHAPES_SHEET")) {
    // Keep a picture to look at: GCPO_SHAPES_SHEET=/tmp/sheet.png ctest -R shapes
    REQUIRE(write_png(keep, sheet).ok());
  }
  fs::remove_all(dir);
  CHECK(tile({}, {}, o).width == 4);
}

// ---- robustness ------------------------------------------------------------------------------

TEST_CASE("scorer on noisy and random grids: no crash, consistent verdicts", "[shapes][scorer]") {
  const auto pool = enumerate_prompts();
  std::mt19937_64 rng(11);
  int correct = 0, strict = 0;
  for (int i = 0; i < 400; ++i) {
    const Metadata& m = pool[rng() % pool.size()];
    Grid g;
    REQUIRE(render(m, TaskConfig{}, rng(), g).ok());
    // Corrupt 0..40 cells with any token, out-of-range ones included.
    const int flips = static_cast<int>(rng() % 41);
    for (int k = 0; k < flips; ++k) g.tokens[rng() % g.tokens.size()] = static_cast<int>(rng() % 26) - 2;
    for (ScoreMode mode : {ScoreMode::binary, ScoreMode::strict, ScoreMode::partial}) {
      ScoreOptions o;
      o.mode = mode;
      const ScoreResult r = score(g, m, o);
      if (r.strict_correct) CHECK(r.correct);
      if (r.strict_correct) CHECK(r.partial == 1.0);
      CHECK(r.partial <= 1.0);
      CHECK(r.correct == r.reason.empty());
      CHECK(r.include.size() == m.include.size());
      if (mode == ScoreMode::binary) {
        correct += r.correct;
        strict += r.strict_correct;
      }
    }
  }
  // Light corruption leaves some images correct, heavy corruption breaks others.
  CHECK(correct > 20);
  CHECK(correct < 400);
  CHECK(strict <= correct);
  // Grids of every size from 1 x 1, and an inconsistent grid, are handled.
  for (int h = 1; h <= 9; ++h)
    for (int w = 1; w <= 9; ++w) {
      Grid g(h, w);
      for (auto& t : g.tokens) t = static_cast<int>(rng() % kCodebookSize);
      (void)score(g, pool[rng() % pool.size()]);
      CHECK(decode(g, 2).width == 2 * w);
    }
  Grid broken(4, 4);
  broken.tokens.resize(3);
  CHECK(detect(broken).components.empty());
}
