# examples/janus/reward_client.cmake - the reward-server client (pickle, restricted unpickler,
# libcurl, JPEG through libjpeg-turbo), the loopback server and their tests: plain C++17, no
# libtorch (issue 13). Included from examples/janus/CMakeLists.txt before the trainer.
