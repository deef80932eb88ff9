// pytorch_model.bin reading (torch_bin.hpp) against files PyTorch itself wrote
// (tests/data/torch_bin/, made by fixtures/make_bin_fixture.py): every tensor equal to the same
// tensor in a safetensors file the script wrote with its own writer; views of shared storages;
// only the wanted records read; and every bad file refused by name, a pickle that would run
// code among them.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "safetensors.hpp"
#include "torch_bin.hpp"

namespace {

const std::string dir = std::string(JANUS_TEST_DATA_DIR) + "/torch_bin/";

std::string load_error(const std::string& path, const std::function<bool(const std::string&)>& want = {}) {
  try {
    (void)janus::load_torch_bin(path, want);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string p = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/gcpo-test-" + name;
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

}  // namespace

TEST_CASE("torch_bin: every tensor equals the independent safetensors copy, views included", "[torch_bin]") {
  const auto got = janus::load_torch_bin(dir + "state.bin");
  const janus::SafeTensors want = janus::load_safetensors(dir + "state.safetensors");
  REQUIRE(got.size() == want.tensors.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO(got[i].first);
    CHECK(got[i].first == want.tensors[i].first);  // pickle order = insertion order
    const at::Tensor& a = got[i].second;
    const at::Tensor& b = want.tensors[i].second;
    CHECK(a.scalar_type() == b.scalar_type());
    CHECK(a.sizes() == b.sizes());
    CHECK(a.is_contiguous());
    CHECK(at::equal(a, b));
  }
  // the views own exactly their elements
  for (const auto& kv : got)
    CHECK(static_cast<std::int64_t>(kv.second.storage().nbytes()) == kv.second.numel() * kv.second.element_size());
}

TEST_CASE("torch_bin: list without reading, only wanted tensors are read", "[torch_bin]") {
  const auto entries = janus::list_torch_bin(dir + "state.bin");
  REQUIRE(entries.size() == 8);
  CHECK(entries[4].name == "model.d.transposed");
  CHECK(entries[4].sizes == std::vector<std::int64_t>{3, 4});
  CHECK(entries[4].strides == std::vector<std::int64_t>{1, 3});
  CHECK(entries[4].storage_key == entries[3].storage_key);  // shares model.e.base's storage
  CHECK(entries[5].storage_offset == 4);
  CHECK(entries[1].dtype == at::kBFloat16);
  CHECK(entries[6].storage_key.empty());  // no elements, no record

  // Corrupt the record of model.a.weight: reading it fails by name, reading the others does not.
  std::string bytes = read_all(dir + "state.bin");
  const auto a = janus::load_torch_bin(dir + "state.bin", [](const std::string& n) { return n == "model.a.weight"; });
  REQUIRE(a.size() == 1);
  const std::string needle(static_cast<const char*>(a[0].second.data_ptr()), 16);
  const std::size_t at = bytes.find(needle);
  REQUIRE(at != std::string::npos);
  bytes[at + 3] = static_cast<char>(bytes[at + 3] ^ 0x55);
  const std::string bad = write_temp("corrupt.bin", bytes);
  CHECK_THAT(load_error(bad), Catch::Contains("model.a.weight") && Catch::Contains("corrupt.bin"));
  const auto others = janus::load_torch_bin(bad, [](const std::string& n) { return n != "model.a.weight"; });
  CHECK(others.size() == 7);
  std::remove(bad.c_str());
}

TEST_CASE("torch_bin: bad files are refused by name", "[torch_bin]") {
  CHECK_THAT(load_error(dir + "evil.bin"), Catch::Contains("evil.bin") && Catch::Contains("not a plain state dict") &&
                                              Catch::Contains("refuses `__builtin__.print`"));
  CHECK_THAT(load_error(dir + "legacy.bin"), Catch::Contains("legacy") && Catch::Contains("legacy.bin"));
  CHECK_THAT(load_error(dir + "list.bin"), Catch::Contains("list.bin") && Catch::Contains("not a dict"));
  CHECK_THAT(load_error(dir + "no-such-file.bin"), Catch::Contains("no-such-file.bin") && Catch::Contains("cannot be opened"));
  CHECK_THAT(load_error(dir + "state.safetensors"), Catch::Contains("not a torch.save zip archive"));

  const std::string bytes = read_all(dir + "state.bin");
  const std::string cut = write_temp("truncated.bin", bytes.substr(0, bytes.size() * 3 / 5));
  CHECK_THAT(load_error(cut), Catch::Contains("truncated.bin"));
  std::remove(cut.c_str());
}
