# proto: the gRPC message subsets (KServe, TF Serving) as protobuf-c C for
# the instance host, generated into $(BUILD)/proto by protoc-c.
PROTO_SRC := proto/grpc_service.proto proto/tensorflow_serving/apis/predict.proto \
	proto/tensorflow/core/framework/tensor.proto proto/tensorflow/core/protobuf/meta_graph.proto
PROTO_GEN_DIR := $(BUILD)/proto
PROTO_GEN_C := $(patsubst proto/%.proto,$(PROTO_GEN_DIR)/%.pb-c.c,$(PROTO_SRC)) \
	$(PROTO_GEN_DIR)/google/protobuf/wrappers.pb-c.c $(PROTO_GEN_DIR)/google/protobuf/any.pb-c.c
PROTO_OBJ := $(PROTO_GEN_C:%.c=%.o)
PROTO_STAMP := $(PROTO_GEN_DIR)/.stamp

$(PROTO_STAMP): $(PROTO_SRC)
	@mkdir -p $(PROTO_GEN_DIR)
	protoc-c -Iproto -I/usr/include --c_out=$(PROTO_GEN_DIR) $(PROTO_SRC:proto/%=%) \
		google/protobuf/wrappers.proto google/protobuf/any.proto
	touch $@
$(PROTO_GEN_C): $(PROTO_STAMP)
# generated code: not held to -Werror
$(PROTO_GEN_DIR)/%.pb-c.o: $(PROTO_GEN_DIR)/%.pb-c.c
	$(CC) $(CPPFLAGS) -I$(PROTO_GEN_DIR) $(CFLAGS) $(SAN) -c $< -o $@

HOST_OBJ += $(PROTO_OBJ)
HOST_LIBS += -lprotobuf-c
# host files that include generated headers
$(BUILD)/host/grpc.o: CPPFLAGS += -I$(PROTO_GEN_DIR)
$(BUILD)/host/grpc.o: | $(PROTO_STAMP)
