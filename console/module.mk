# console/: the web console's static files, built into the daemon as C arrays
# (xxd -i, Debian's xxd package) and served at /console/ (daemon/console.c).
CONSOLE_FILES := $(sort $(wildcard console/*.html console/*.css console/*.js console/*.svg))
CONSOLE_OBJ   := $(BUILD)/console/assets.o

$(BUILD)/console/assets.c: $(CONSOLE_FILES) console/module.mk
	@mkdir -p $(dir $@)
	@{ echo '/* generated from console/ by console/module.mk */'; \
	  echo '#include "daemon/console.h"'; \
	  for f in $(CONSOLE_FILES); do xxd -i $$f | sed -e 's/^unsigned char/static const unsigned char/' -e '/_len = /d'; done; \
	  echo 'const struct console_asset console_assets[] = {'; \
	  for f in $(CONSOLE_FILES); do v=$$(echo $$f | tr './-' '___'); \
	    echo "	{ \"$${f#console/}\", $$v, sizeof($$v) },"; done; \
	  echo '};'; \
	  echo 'const unsigned console_n_assets = sizeof(console_assets) / sizeof(console_assets[0]);'; \
	} > $@.tmp && mv $@.tmp $@

$(CONSOLE_OBJ): $(BUILD)/console/assets.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# into libthaw.a with the rest of the daemon (its recipe archives $^)
$(LIBTHAW) $(LIBCOMMON): $(CONSOLE_OBJ)
