// examples/janus/prompts.cpp - see prompts.hpp.
#include "prompts.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "shapes_task.hpp"  // shapes::derive_seed

namespace janus {
namespace {

using nlohmann::json;

std::string where(const std::string& path, std::int64_t line) { return path + ":" + std::to_string(line) + ": "; }

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c) != 0; });
}

bool contains(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "'" : ", '") + s + "'";
  return out;
}

/// "" when `j[key]` is an integer >= 1 (JSON integers only: 2.0 is not a count), else the reason.
std::string check_count(const json& clause, const std::string& name) {
  if (!clause.contains("count")) return "`" + name + ".count` is missing";
  const json& c = clause["count"];
  if (!c.is_number_integer() || c.get<std::int64_t>() < 1)
    return "`" + name + ".count` must be an integer >= 1, got " + c.dump();
  return "";
}

std::string check_class(const json& clause, const std::string& name) {
  if (!clause.contains("class")) return "`" + name + ".class` is missing";
  if (!clause["class"].is_string() || clause["class"].get<std::string>().empty())
    return "`" + name + ".class` must be a non-empty string, got " + clause["class"].dump();
  return "";
}

/// The record of one line or array element: a GenEval record when it has `tag` or `include`,
/// else a prompt-only one.
PromptRecord record_of(const json& j, const std::string& path, std::int64_t line) {
  if (!j.is_object()) throw std::runtime_error(where(path, line) + "a record must be a JSON object, got " + j.type_name());
  PromptRecord r;
  r.line = line;
  r.meta = j;
  if (!j.contains("prompt")) throw std::runtime_error(where(path, line) + "`prompt` is missing");
  if (!j["prompt"].is_string()) throw std::runtime_error(where(path, line) + "`prompt` must be a string, got " + j["prompt"].dump());
  r.prompt = j["prompt"].get<std::string>();
  if (is_blank(r.prompt)) throw std::runtime_error(where(path, line) + "`prompt` is blank");
  if (j.contains("tag") || j.contains("include")) {
    const std::string why = check_geneval_record(j);
    if (!why.empty()) throw std::runtime_error(where(path, line) + why);
    r.tag = j["tag"].get<std::string>();
  }
  return r;
}

}  // namespace

const std::vector<std::string>& geneval_tags() {
  static const std::vector<std::string> v = {"single_object", "two_object", "counting", "colors", "position", "color_attr"};
  return v;
}
const std::vector<std::string>& geneval_colors() {
  static const std::vector<std::string> v = {"red", "orange", "yellow", "green", "blue",
                                             "purple", "pink", "brown", "black", "white"};
  return v;
}
const std::vector<std::string>& geneval_relations() {
  static const std::vector<std::string> v = {"left of", "right of", "above", "below"};
  return v;
}

std::string check_geneval_record(const json& j) {
  if (!j.is_object()) return std::string("a record must be a JSON object, got ") + j.type_name();
  if (!j.contains("tag")) return "`tag` is missing";
  if (!j["tag"].is_string() || !contains(geneval_tags(), j["tag"].get<std::string>()))
    return "`tag` must be one of " + joined(geneval_tags()) + ", got " + j["tag"].dump();
  if (!j.contains("include")) return "`include` is missing";
  const json& inc = j["include"];
  if (!inc.is_array() || inc.empty()) return "`include` must be a non-empty list of clauses, got " + inc.dump();
  for (std::size_t i = 0; i < inc.size(); ++i) {
    const std::string name = "include[" + std::to_string(i) + "]";
    const json& c = inc[i];
    if (!c.is_object()) return "`" + name + "` must be an object, got " + c.dump();
    for (const std::string& why : {check_class(c, name), check_count(c, name)})
      if (!why.empty()) return why;
    if (c.contains("color")) {
      if (!c["color"].is_string() || !contains(geneval_colors(), c["color"].get<std::string>()))
        return "`" + name + ".color` must be one of " + joined(geneval_colors()) + ", got " + c["color"].dump();
    }
    if (c.contains("position")) {
      const json& p = c["position"];
      if (!p.is_array() || p.size() != 2) return "`" + name + ".position` must be [relation, index], got " + p.dump();
      if (!p[0].is_string() || !contains(geneval_relations(), p[0].get<std::string>()))
        return "`" + name + ".position[0]` must be one of " + joined(geneval_relations()) + ", got " + p[0].dump();
      if (!p[1].is_number_integer() || p[1].get<std::int64_t>() < 0 || p[1].get<std::int64_t>() >= static_cast<std::int64_t>(i))
        return "`" + name + ".position[1]` must index an earlier include clause (0.." +
               (i == 0 ? std::string("none") : std::to_string(i - 1)) + "), got " + p[1].dump();
    }
  }
  if (j.contains("exclude")) {
    const json& exc = j["exclude"];
    if (!exc.is_array()) return "`exclude` must be a list of clauses, got " + exc.dump();
    for (std::size_t i = 0; i < exc.size(); ++i) {
      const std::string name = "exclude[" + std::to_string(i) + "]";
      if (!exc[i].is_object()) return "`" + name + "` must be an object, got " + exc[i].dump();
      for (const std::string& why : {check_class(exc[i], name), check_count(exc[i], name)})
        if (!why.empty()) return why;
    }
  }
  return "";
}

std::vector<PromptRecord> read_prompt_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw std::runtime_error(path + ": is a directory, not a prompt file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot be opened");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  std::vector<PromptRecord> out;
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    // one JSON array of records (what load_dataset("json") also reads)
    json all;
    try {
      all = json::parse(text);
    } catch (const json::exception& e) {
      throw std::runtime_error(path + ": not valid JSON: " + e.what());
    }
    for (std::size_t i = 0; i < all.size(); ++i) out.push_back(record_of(all[i], path, static_cast<std::int64_t>(i) + 1));
  } else {
    std::istringstream lines(text);
    std::string line;
    std::int64_t n = 0;
    while (std::getline(lines, line)) {
      ++n;
      if (is_blank(line)) continue;
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception& e) {
        throw std::runtime_error(where(path, n) + "not valid JSON: " + e.what());
      }
      out.push_back(record_of(j, path, n));
    }
  }
  if (out.empty()) throw std::runtime_error(path + ": has no prompt record");
  return out;
}

std::vector<std::size_t> prompt_indices_for_step(std::size_t count, std::int64_t per_step, std::uint64_t seed,
                                                 std::int64_t step) {
  if (count == 0) throw std::invalid_argument("prompt_indices_for_step: no records");
  if (per_step < 1 || step < 0) throw std::invalid_argument("prompt_indices_for_step: per_step >= 1 and step >= 0");
  const auto permutation = [&](std::uint64_t epoch) {
    std::vector<std::size_t> p(count);
    for (std::size_t i = 0; i < count; ++i) p[i] = i;
    std::mt19937_64 rng(shapes::derive_seed(seed, epoch));
    for (std::size_t i = count - 1; i > 0; --i) {
      // in [0, i] by the remainder (the same on every standard library, unlike the
      // distributions; its bias is below (i + 1) / 2^64)
      const std::size_t j = static_cast<std::size_t>(rng() % (static_cast<std::uint64_t>(i) + 1));
      std::swap(p[i], p[j]);
    }
    return p;
  };
  std::vector<std::size_t> out;
  const std::uint64_t begin = static_cast<std::uint64_t>(step) * static_cast<std::uint64_t>(per_step);
  std::uint64_t epoch = begin / count;
  std::vector<std::size_t> perm = permutation(epoch);
  for (std::uint64_t k = begin; k < begin + static_cast<std::uint64_t>(per_step); ++k) {
    if (k / count != epoch) perm = permutation(epoch = k / count);
    out.push_back(perm[k % count]);
  }
  return out;
}

}  // namespace janus
