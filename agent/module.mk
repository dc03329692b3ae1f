# The custom-runtime agent (agent/agent.h): a shared object beside
# thaw-instance, LD_PRELOADed into a custom runtime's processes. Its own
# position-independent objects (common/memfile.c too); no sanitizer, which
# would have to be loaded first into every process of the server.
AGENT_SO := $(BUILD)/libthaw-agent.so
AGENT_OBJ := $(BUILD)/agent/agent.pic.o $(BUILD)/agent/memfile.pic.o
AGENT_CFLAGS = $(CPPFLAGS) $(WARN) $(CFLAGS) -fPIC -fvisibility=hidden
$(BUILD)/agent/agent.pic.o: agent/agent.c
	@mkdir -p $(dir $@)
	$(CC) $(AGENT_CFLAGS) -c $< -o $@
$(BUILD)/agent/memfile.pic.o: common/memfile.c
	@mkdir -p $(dir $@)
	$(CC) $(AGENT_CFLAGS) -c $< -o $@
$(AGENT_SO): $(AGENT_OBJ)
	$(CC) $(CFLAGS) -shared -Wl,-z,defs -o $@ $^ -lpthread
TOOLS += $(AGENT_SO)
