# tests/bench/bench_snapmem: mapped snapshot memory against the snapshot API
# (echo and this handler); make bench runs it.
$(BUILD)/tests/bench/bench_snapmem: tests/bench/bench_snapmem.c $(LIBTHAW) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBTHAW) $(LIBCOMMON) $(LIBS) $(DAEMON_LIBS)
TOOLS += $(BUILD)/tests/bench/bench_snapmem
