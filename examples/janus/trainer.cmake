# examples/janus/trainer.cmake - the example trainer (libtorch): janus_trainer and its tests.
# Included from examples/janus/CMakeLists.txt. Built only when libtorch is found (Debian
# libtorch-dev, or PyTorch's: -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch;
# print(torch.utils.cmake_prefix_path)')), so the project builds without it.

find_package(Torch QUIET)
if(Torch_FOUND OR TORCH_FOUND)
  set(_janus_trainer_default ON)
else()
  set(_janus_trainer_default OFF)
endif()
option(GCPO_BUILD_TRAINER "Build the libtorch example trainer (janus_trainer)" ${_janus_trainer_default})

if(GCPO_BUILD_TRAINER)
  if(NOT (Torch_FOUND OR TORCH_FOUND))
    message(FATAL_ERROR "GCPO_BUILD_TRAINER is ON but libtorch was not found (install libtorch-dev or set CMAKE_PREFIX_PATH)")
  endif()
  find_package(CLI11 2 REQUIRED)
  find_package(nlohmann_json 3 REQUIRED)
  find_package(ZLIB REQUIRED)  # CRC-32 of pytorch_model.bin records (torch_bin.cpp)

  # The model, the gcpo glue, safetensors I/O and the training loops: one library shared by
  # the binary and the tests (few translation units: each libtorch one compiles slowly).
  add_library(janus_trainer_lib STATIC data_parallel.cpp model.cpp model_dir.cpp ops.cpp pretrained.cpp safetensors.cpp
                                     torch_bin.cpp train.cpp vq_decoder.cpp)
  target_include_directories(janus_trainer_lib PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_features(janus_trainer_lib PUBLIC cxx_std_17)
  target_link_libraries(janus_trainer_lib
    PUBLIC gcpo::gcpo gcpo_shapes_task janus_prompts ${TORCH_LIBRARIES} nlohmann_json::nlohmann_json ZLIB::ZLIB
    PRIVATE gcpo_project_flags)
  # Real prompts and rewards (issue 13): the tokenizer and the reward-server client when their
  # libraries were built (tokenizer.cmake, reward_client.cmake); otherwise janus_trainer refuses
  # --prompts FILE, --reward-server and `tokenize` with a message saying what to install.
  if(TARGET janus_tokenizer AND TARGET janus_reward_client)
    target_link_libraries(janus_trainer_lib PUBLIC janus_tokenizer janus_reward_client)
    target_compile_definitions(janus_trainer_lib PUBLIC JANUS_HAVE_REAL_IO=1)
  else()
    message(WARNING "janus_trainer is built without the tokenizer or the reward client: --prompts FILE, "
                    "--reward-server and `tokenize` are refused (install libpcre2-dev, libcurl4-openssl-dev, "
                    "libturbojpeg0-dev)")
  endif()
  # libtorch's headers trip -Wpedantic/-Wextra; they are third-party, so include them as system headers.
  target_include_directories(janus_trainer_lib SYSTEM PUBLIC ${TORCH_INCLUDE_DIRS})
  # One precompiled <torch/torch.h> for every trainer translation unit (parsing it is most of
  # each one's compile time).
  target_precompile_headers(janus_trainer_lib PRIVATE <torch/torch.h>)
  # Data parallelism on c10d (distributed.cpp, issue 11): its own library so that only this
  # translation unit sees c10d's headers and their macros. Debian's libtorch has Gloo (libgloo0)
  # but not its headers: they come with libgloo-dev (scripts/install-deps.sh --trainer). A
  # libtorch without Gloo's headers anywhere (some PyTorch wheels, which link Gloo into
  # libtorch_cpu) builds the trainer without janus_dist: janus_trainer then refuses a launch with
  # WORLD_SIZE > 1, and the data-parallel tests are left out with a warning rather than failing
  # the whole build (the GPU machine's device check builds the trainer against such a libtorch).
  find_path(JANUS_GLOO_INCLUDE_DIR gloo/config.h HINTS ${TORCH_INSTALL_PREFIX}/include)
  find_library(JANUS_GLOO_LIBRARY gloo)
  option(JANUS_REQUIRE_DIST "fail the configuration when janus_dist cannot be built (scripts/test.sh sets it)" OFF)
  if(NOT JANUS_GLOO_INCLUDE_DIR AND JANUS_REQUIRE_DIST)
    message(FATAL_ERROR "janus_dist needs Gloo's headers (gloo/config.h), which c10d's ProcessGroupGloo.hpp "
                        "includes: install libgloo-dev (Debian) or set JANUS_GLOO_INCLUDE_DIR")
  elseif(NOT JANUS_GLOO_INCLUDE_DIR)
    message(WARNING "janus_dist (data parallelism, issue 11) is not built: Gloo's headers (gloo/config.h), which "
                    "c10d's ProcessGroupGloo.hpp includes, were not found: install libgloo-dev (Debian) or set "
                    "JANUS_GLOO_INCLUDE_DIR")
  else()
  add_library(janus_dist STATIC distributed.cpp)
  target_include_directories(janus_dist PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_include_directories(janus_dist SYSTEM PUBLIC ${TORCH_INCLUDE_DIRS} PRIVATE ${JANUS_GLOO_INCLUDE_DIR})
  target_compile_features(janus_dist PUBLIC cxx_std_17)
  target_compile_definitions(janus_dist PRIVATE USE_C10D_GLOO=1)
  target_link_libraries(janus_dist PUBLIC ${TORCH_LIBRARIES} PRIVATE gcpo_project_flags)
  if(JANUS_GLOO_LIBRARY)  # Debian: a separate libgloo; PyTorch wheels: Gloo inside libtorch_cpu
    target_link_libraries(janus_dist PRIVATE ${JANUS_GLOO_LIBRARY})
  endif()
  # A CUDA libtorch (TORCH_CUDA_LIBRARIES set) has c10d's ProcessGroupNCCL; its header needs nccl.h
  # (JANUS_NCCL_INCLUDE_DIR, e.g. pip's nvidia/nccl/include). Without both, "nccl" is refused at run time.
  set(_janus_nccl OFF)
  if(TORCH_CUDA_LIBRARIES)
    find_path(JANUS_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
    if(JANUS_NCCL_INCLUDE_DIR)
      target_include_directories(janus_dist SYSTEM PRIVATE ${JANUS_NCCL_INCLUDE_DIR})
      target_compile_definitions(janus_dist PRIVATE USE_C10D_NCCL=1)
      set(_janus_nccl ON)
    endif()
  endif()
  message(STATUS "janus_dist: c10d Gloo ON, NCCL ${_janus_nccl}")
  target_link_libraries(janus_trainer_lib PUBLIC janus_dist)
  endif()

  if(TARGET gcpo::cuda)
    # --device cuda runs gcpo's CUDA twins (precompiled kernels, no nvcc needed here).
    target_link_libraries(janus_trainer_lib PUBLIC gcpo::cuda)
    set_source_files_properties(ops.cpp PROPERTIES COMPILE_DEFINITIONS JANUS_WITH_GCPO_CUDA=1)
  endif()

  add_executable(janus_trainer trainer.cpp)
  target_link_libraries(janus_trainer PRIVATE janus_trainer_lib CLI11::CLI11 gcpo_project_flags ${CMAKE_DL_LIBS})
  if(TARGET janus_dist)  # torchrun / launch.sh launches build a c10d process group
    target_compile_definitions(janus_trainer PRIVATE JANUS_HAVE_DIST=1)
  endif()
  target_precompile_headers(janus_trainer REUSE_FROM janus_trainer_lib)

  # Janus-Pro at its real size with random weights: load time, memory, generation speed (a benchmark)
  add_executable(janus_bench_pretrained bench_pretrained.cpp)
  target_link_libraries(janus_bench_pretrained PRIVATE janus_trainer_lib gcpo_project_flags)
  target_precompile_headers(janus_bench_pretrained REUSE_FROM janus_trainer_lib)

  if(GCPO_BUILD_TESTS AND TARGET gcpo_catch_main)
    include(Catch)
    # A Catch2 test of the trainer library: janus_add_test(<target> <source> [PROPERTIES ...]).
    # Listing the cases runs the binary right after the build: it must start without a GPU.
    function(janus_add_test name source)
      add_executable(${name} ${source})
      target_link_libraries(${name} PRIVATE janus_trainer_lib gcpo_catch_main gcpo_project_flags)
      target_precompile_headers(${name} REUSE_FROM janus_trainer_lib)
      target_compile_definitions(${name} PRIVATE JANUS_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/tests/data")
      catch_discover_tests(${name} TEST_PREFIX "trainer: " EXTRA_ARGS --warn NoTests ${ARGN})
    endfunction()
    janus_add_test(test_janus_trainer tests/test_trainer.cpp PROPERTIES TIMEOUT 600)
    # GCPO's ablations (issue 15): --mask-mode and --weight
    janus_add_test(test_janus_ablations tests/test_ablations.cpp PROPERTIES TIMEOUT 300)
    # scripts/compare.py (issue 15): its paired statistics against published t quantiles, and the
    # script end to end on the test warm start (needs python3-matplotlib: install-deps.sh --compare)
    find_package(Python3 COMPONENTS Interpreter)
    if(Python3_Interpreter_FOUND)
      add_test(NAME "scripts: paired statistics"
               COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/tests/test_paired_stats.py)
      add_test(NAME "scripts: compare.py end to end"
               COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/tests/test_compare_e2e.py
                       $<TARGET_FILE:janus_trainer> ${CMAKE_CURRENT_SOURCE_DIR}/tests/data/warm_single_object_8x8.safetensors
                       ${CMAKE_CURRENT_BINARY_DIR}/compare-e2e)
      set_tests_properties("scripts: compare.py end to end" PROPERTIES TIMEOUT 600)
    endif()
    # The command line's run safety (issue 8): runs the janus_trainer binary as a child process
    # on bad flags, corrupted checkpoints, resume, locking, signals and simulated crashes. Plain
    # C++ (no libtorch): safetensors files are edited as bytes.
    add_executable(test_janus_cli tests/test_cli.cpp)
    target_link_libraries(test_janus_cli PRIVATE gcpo_catch_main gcpo_project_flags nlohmann_json::nlohmann_json)
    target_compile_definitions(test_janus_cli PRIVATE JANUS_TRAINER_BIN="$<TARGET_FILE:janus_trainer>"
                                                      JANUS_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/tests/data")
    add_dependencies(test_janus_cli janus_trainer)
    catch_discover_tests(test_janus_cli TEST_PREFIX "trainer: " EXTRA_ARGS --warn NoTests PROPERTIES TIMEOUT 900)
    # Janus-Pro's VQ-16 decoder against a float64 reference written from the spec (fixtures/)
    janus_add_test(test_janus_vq tests/test_vq_decoder.cpp)
    # pytorch_model.bin (torch.save zip archives): libtorch's zip reader, a restricted pickle reader, CRC-32
    janus_add_test(test_janus_torch_bin tests/test_torch_bin.cpp)
    # a Janus-Pro model directory: config.json and the four weight layouts (tests/data/janus_tiny)
    janus_add_test(test_janus_model_dir tests/test_model_dir.cpp)
    # the trainer's model loaded from such a directory; `forward` against an independent reference
    janus_add_test(test_janus_pretrained tests/test_pretrained.cpp)
    # `rl --model-dir`: GCPO / GRPO at N = 576 on such a directory, pictures from its VQ decoder,
    # bit-exact resume in float32 and bf16 (master weights), eval / sample through the decoder
    janus_add_test(test_janus_rl_model_dir tests/test_rl_model_dir.cpp PROPERTIES TIMEOUT 900)
    # Real prompts and rewards (issue 13): a prompt file, the fixture tokenizer and the loopback
    # reward server end to end, its faults, and the settings' checks
    if(TARGET janus_tokenizer AND TARGET janus_reward_client AND _janus_rw_defs)
      janus_add_test(test_janus_real_io tests/test_real_io.cpp PROPERTIES TIMEOUT 600)
      target_compile_definitions(test_janus_real_io PRIVATE ${_janus_rw_defs})
    endif()
    # Data parallelism (issue 11): launch variables, c10d collectives over Gloo between child
    # processes (distributed_worker) on 127.0.0.1, a killed rank, a missing rank, scripts/launch.sh.
    # Linked against janus_dist alone (not the whole trainer library).
    if(TARGET janus_dist)
    add_executable(janus_dist_worker tests/distributed_worker.cpp)
    target_link_libraries(janus_dist_worker PRIVATE janus_dist gcpo_project_flags)
    add_executable(test_janus_distributed tests/test_distributed.cpp)
    target_link_libraries(test_janus_distributed PRIVATE janus_dist gcpo_catch_main gcpo_project_flags)
    target_compile_definitions(test_janus_distributed PRIVATE
      JANUS_DIST_WORKER_BIN="$<TARGET_FILE:janus_dist_worker>"
      JANUS_LAUNCH_SH="${PROJECT_SOURCE_DIR}/scripts/launch.sh"
      JANUS_SLURM_ENV_SH="${PROJECT_SOURCE_DIR}/scripts/slurm_env.sh")
    add_dependencies(test_janus_distributed janus_dist_worker)
    catch_discover_tests(test_janus_distributed TEST_PREFIX "trainer: " EXTRA_ARGS --warn NoTests PROPERTIES TIMEOUT 300)
    # Data-parallel training: GradientSync / ShardedAdamW in process, then janus_trainer as 2
    # Gloo processes against 1 (rollouts, metrics, weights, one writer, resume, sharding, a kill)
    janus_add_test(test_janus_data_parallel tests/test_data_parallel.cpp PROPERTIES TIMEOUT 900)
    target_compile_definitions(test_janus_data_parallel PRIVATE JANUS_TRAINER_BIN="$<TARGET_FILE:janus_trainer>")
    if(TARGET janus_tokenizer AND TARGET janus_reward_client AND _janus_rw_defs)
      # the prompt-file / reward-server cases (the loopback server)
      target_compile_definitions(test_janus_data_parallel PRIVATE ${_janus_rw_defs})
    endif()
    add_dependencies(test_janus_data_parallel janus_trainer)
    endif()
  endif()
endif()
