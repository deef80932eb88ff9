// examples/janus/prompts.hpp - the prompt files of real runs (issue 13): GenEval's metadata
// JSONL and the official trainer's training metadata (shared/spec/janus-trainer.md section 5),
// and the order in which a run draws them. Plain C++17 (nlohmann_json), no libtorch.
//
// Formats read by read_prompt_file():
//   GenEval JSONL (geneval_train_metadata.jsonl, GenEval's evaluation_metadata.jsonl): one
//     object per line, {"tag", "include": [{"class", "count"[, "color"][, "position":
//     [relation, j]]}], "exclude"?: [{"class", "count"}], "prompt"}; checked as GenEval's
//     rules read it (shared/spec/geneval-rules.md): a known tag, a non-empty include list,
//     counts >= 1, a colour of GenEval's ten, a relation of the four, j an earlier clause.
//     The whole line travels to the reward server as the image's metadata (official).
//   Prompt-only records (the HPS training metadata, read by `load_dataset("json")`): JSON Lines
//     or one JSON array of objects with a "prompt" string; other keys are kept as metadata.
// A line that is neither, a blank prompt, or a file with no record is an error naming the file
// and the line ("prompts.jsonl:12: `include[0].count` must be an integer >= 1, got 0").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace janus {

/// One prompt of a prompt file.
struct PromptRecord {
  std::string prompt;     ///< the text the model is prompted with (the chat template is added later)
  std::string tag;        ///< GenEval's tag; "" for a prompt-only record
  nlohmann::json meta;    ///< the whole record, as the reward server receives it
  std::int64_t line = 0;  ///< 1-based line (JSONL) or element index + 1 (JSON array)
};

/// GenEval's six tags, ten colours and four relations (geneval-rules.md).
const std::vector<std::string>& geneval_tags();
const std::vector<std::string>& geneval_colors();
const std::vector<std::string>& geneval_relations();

/// Checks one GenEval metadata object; returns "" when it is valid, else what is wrong, naming
/// the field (`include[1].position[1]`).
std::string check_geneval_record(const nlohmann::json& record);

/// Reads a prompt file (formats above). Throws std::runtime_error naming the file and the line.
std::vector<PromptRecord> read_prompt_file(const std::string& path);

/// The records of step `step` of a run that draws `per_step` prompts per step: consecutive
/// slices of an endless sequence of epochs, each epoch a permutation of every record seeded by
/// (`seed`, epoch) (a pure function of its arguments, so a resumed run draws what the
/// uninterrupted run would have). `per_step` may exceed the file's size (records repeat across
/// epochs then). Indices into `count` records.
std::vector<std::size_t> prompt_indices_for_step(std::size_t count, std::int64_t per_step, std::uint64_t seed,
                                                 std::int64_t step);

}  // namespace janus
