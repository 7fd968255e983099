package queue

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// taskMessageDescriptor is asynq.proto's TaskMessage (asynq v0.26), built
// by hand so that protobuf-go's own decoder can check appendTaskMessage.
func taskMessageDescriptor(t testing.TB) protoreflect.MessageDescriptor {
	t.Helper()
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String(name)}
	}
	str, byt, i32, i64 := descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_BYTES,
		descriptorpb.FieldDescriptorProto_TYPE_INT32, descriptorpb.FieldDescriptorProto_TYPE_INT64
	headers := field("headers", 15, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE)
	headers.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	headers.TypeName = proto.String(".asynq.TaskMessage.HeadersEntry")
	fd := &descriptorpb.FileDescriptorProto{
		Name: proto.String("asynq.proto"), Package: proto.String("asynq"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("TaskMessage"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("type", 1, str), field("payload", 2, byt), headers, field("id", 3, str), field("queue", 4, str),
				field("retry", 5, i32), field("retried", 6, i32), field("error_msg", 7, str), field("last_failed_at", 11, i64),
				field("timeout", 8, i64), field("deadline", 9, i64), field("unique_key", 10, str), field("group_key", 14, str),
				field("retention", 12, i64), field("completed_at", 13, i64),
			},
			NestedType: []*descriptorpb.DescriptorProto{{
				Name:    proto.String("HeadersEntry"),
				Field:   []*descriptorpb.FieldDescriptorProto{field("key", 1, str), field("value", 2, str)},
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
			}},
		}},
	}
	f, err := protodesc.NewFile(fd, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f.Messages().ByName("TaskMessage")
}

// FuzzTaskMessage: whatever appendTaskMessage encodes, protobuf-go decodes
// (as strictly as asynq's decoder: UTF-8 strings) to the same fields.
func FuzzTaskMessage(f *testing.F) {
	f.Add("test.echo", []byte(`{"n":1}`), "k_0123", "default", int32(10), int64(1800), int64(0), "agentq-run-id", "run-1", "agentq-idempotency-key", "")
	f.Add("", []byte{}, "", "q", int32(-1), int64(-5), int64(1<<40), "", "", "a", "b")
	f.Add("x\xff", []byte{0}, "id", "q", int32(0), int64(0), int64(0), "k", "v\xfe", "", "")
	md := taskMessageDescriptor(f)
	f.Fuzz(func(t *testing.T, kind string, payload []byte, id, queue string, retry int32, timeout, deadline int64, k1, v1, k2, v2 string) {
		m := taskMessage{kind: kind, payload: payload, id: id, queue: queue, retry: retry, timeout: timeout, deadline: deadline,
			headers: []header{{k1, v1}}}
		if k2 != k1 {
			m.headers = append(m.headers, header{k2, v2})
		}
		b, err := appendTaskMessage(nil, &m)
		valid := utf8.ValidString(kind) && utf8.ValidString(id) && utf8.ValidString(queue)
		for _, h := range m.headers {
			valid = valid && utf8.ValidString(h.k) && utf8.ValidString(h.v)
		}
		if !valid {
			if err == nil {
				t.Fatal("invalid UTF-8 encoded without an error")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > taskMessageSize(&m) {
			t.Fatalf("encoded %d bytes, size bound %d", len(b), taskMessageSize(&m))
		}
		msg := dynamicpb.NewMessage(md)
		if err := proto.Unmarshal(b, msg); err != nil {
			t.Fatalf("protobuf-go cannot decode it: %v", err)
		}
		get := func(name string) protoreflect.Value { return msg.Get(md.Fields().ByName(protoreflect.Name(name))) }
		if get("type").String() != kind || string(get("payload").Bytes()) != string(payload) || get("id").String() != id ||
			get("queue").String() != queue || int32(get("retry").Int()) != retry || get("timeout").Int() != timeout ||
			get("deadline").Int() != deadline {
			t.Fatalf("decoded %v", msg)
		}
		hs := get("headers").Map()
		if hs.Len() != len(m.headers) {
			t.Fatalf("decoded %d headers, want %d", hs.Len(), len(m.headers))
		}
		for _, h := range m.headers {
			if v := hs.Get(protoreflect.ValueOfString(h.k).MapKey()); v.String() != h.v {
				t.Fatalf("header %q = %q, want %q", h.k, v.String(), h.v)
			}
		}
	})
}
