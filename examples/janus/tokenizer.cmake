# examples/janus/tokenizer.cmake - the Janus-Pro tokenizer (byte-level BPE from tokenizer.json,
# regexes through PCRE2) and its tests: plain C++17, no libtorch (issue 13).
# Included from examples/janus/CMakeLists.txt before the trainer.
#
# Targets: janus_tokenizer (library), janus_tokenize (the `tokenize` command on its own),
# janus_tokenizer_bench (MB/s on one core), test_tokenizer. The comparison with Hugging Face's
# own implementation installs the npm package `tokenizers` into the build tree at test time
# (CTest fixture "tokenizer: npm install"), trains tokenizers with it and encodes the corpus
# (tests/tokenizer_reference.mjs), then test_tokenizer compares every id.

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(JANUS_PCRE2 QUIET IMPORTED_TARGET libpcre2-8)
endif()

if(NOT JANUS_PCRE2_FOUND)
  if(JANUS_REQUIRE_IO)
    message(FATAL_ERROR "janus_tokenizer needs PCRE2 (libpcre2-8, found through pkg-config): install libpcre2-dev "
                        "and pkg-config (scripts/install-deps.sh --trainer)")
  endif()
  message(WARNING "janus_tokenizer (issue 13) is not built: PCRE2 (libpcre2-8) was not found through pkg-config; "
                  "install libpcre2-dev and pkg-config")
  return()
endif()

find_package(nlohmann_json 3 REQUIRED)

add_library(janus_tokenizer STATIC tokenizer.cpp)
target_include_directories(janus_tokenizer PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_features(janus_tokenizer PUBLIC cxx_std_17)
target_link_libraries(janus_tokenizer
  PRIVATE PkgConfig::JANUS_PCRE2 nlohmann_json::nlohmann_json janus_run_dir gcpo_project_flags)

find_package(CLI11 2 QUIET)
if(CLI11_FOUND)
  add_executable(janus_tokenize tokenize_main.cpp)
  target_link_libraries(janus_tokenize PRIVATE janus_tokenizer CLI11::CLI11 gcpo_project_flags)
elseif(JANUS_REQUIRE_IO)
  message(FATAL_ERROR "janus_tokenize needs CLI11 2 (install libcli11-dev)")
else()
  message(WARNING "janus_tokenize is not built: CLI11 2 was not found (install libcli11-dev)")
endif()

# One core, the corpus of the comparison test: reports MB/s (docs/performance.md). A benchmark,
# never a test.
add_executable(janus_tokenizer_bench bench_tokenizer.cpp)
target_link_libraries(janus_tokenizer_bench PRIVATE janus_tokenizer gcpo_project_flags)

if(GCPO_BUILD_TESTS AND TARGET gcpo_catch_main)
  find_package(Catch2 2 REQUIRED)
  include(Catch)
  set(_tok_ref_dir "${CMAKE_CURRENT_BINARY_DIR}/tokenizer-reference")
  set(_tok_npm_dir "${CMAKE_CURRENT_BINARY_DIR}/npm-tokenizers")
  set(JANUS_TOKENIZERS_NPM_VERSION "0.23.2" CACHE STRING "version of the npm package `tokenizers` the tokenizer is compared with")

  add_executable(test_tokenizer tests/test_tokenizer.cpp)
  target_link_libraries(test_tokenizer PRIVATE janus_tokenizer gcpo_catch_main gcpo_project_flags nlohmann_json::nlohmann_json)
  target_compile_definitions(test_tokenizer PRIVATE
    JANUS_TOKENIZER_FIXTURES="${CMAKE_CURRENT_SOURCE_DIR}/tests/fixtures/tokenizer"
    JANUS_TOKENIZER_CORPUS="${CMAKE_CURRENT_SOURCE_DIR}/tests/data/tokenizer-corpus.txt"
    JANUS_TOKENIZER_REF_DIR="${_tok_ref_dir}"
    JANUS_TOKENIZER_SCRATCH="${CMAKE_CURRENT_BINARY_DIR}/tokenizer-scratch")
  if(TARGET janus_tokenize)
    target_compile_definitions(test_tokenizer PRIVATE JANUS_TOKENIZE_BIN="$<TARGET_FILE:janus_tokenize>")
    add_dependencies(test_tokenizer janus_tokenize)
  endif()
  # The comparison case ([.reference], hidden) runs only as "tokenizer: reference ids" below.
  catch_discover_tests(test_tokenizer TEST_PREFIX "tokenizer: ")

  find_program(JANUS_NODE node)
  find_program(JANUS_NPM npm)
  if(JANUS_NODE AND JANUS_NPM)
    add_test(NAME "tokenizer: npm install"
             COMMAND ${JANUS_NPM} install --no-save --no-audit --no-fund --no-package-lock --prefix ${_tok_npm_dir}
                     tokenizers@${JANUS_TOKENIZERS_NPM_VERSION})
    set_tests_properties("tokenizer: npm install" PROPERTIES FIXTURES_SETUP janus_tokenizer_npm TIMEOUT 600)
    add_test(NAME "tokenizer: reference train and encode"
             COMMAND ${JANUS_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/tests/tokenizer_reference.mjs
                     --modules ${_tok_npm_dir}/node_modules
                     --corpus ${CMAKE_CURRENT_SOURCE_DIR}/tests/data/tokenizer-corpus.txt
                     --out ${_tok_ref_dir})
    set_tests_properties("tokenizer: reference train and encode" PROPERTIES
      FIXTURES_REQUIRED janus_tokenizer_npm FIXTURES_SETUP janus_tokenizer_ref TIMEOUT 600)
    add_test(NAME "tokenizer: reference ids" COMMAND test_tokenizer "[reference]")
    set_tests_properties("tokenizer: reference ids" PROPERTIES FIXTURES_REQUIRED janus_tokenizer_ref TIMEOUT 600)
  elseif(JANUS_REQUIRE_IO)
    message(FATAL_ERROR "the tokenizer's comparison with Hugging Face needs node and npm (install nodejs and npm)")
  else()
    message(WARNING "the tokenizer's comparison with Hugging Face is not registered: node or npm was not found")
  endif()
endif()
