import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.ToNumberPolicy;
import com.segment.analytics.Analytics;
import com.segment.analytics.Callback;
import com.segment.analytics.Log;
import com.segment.analytics.messages.AliasMessage;
import com.segment.analytics.messages.GroupMessage;
import com.segment.analytics.messages.IdentifyMessage;
import com.segment.analytics.messages.Message;
import com.segment.analytics.messages.MessageBuilder;
import com.segment.analytics.messages.PageMessage;
import com.segment.analytics.messages.ScreenMessage;
import com.segment.analytics.messages.TrackMessage;
import java.lang.reflect.Field;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Sends a scenario through Segment's analytics-java, configured as its README says with only
 * the endpoint and the write key changed, and prints what happened as one JSON object.
 *
 * <pre>java -cp target/classes:target/lib/* Send COLLECTOR_URL WRITE_KEY SCENARIO.json</pre>
 *
 * SCENARIO.json: {"batches": [[{"call": "track", "params": {...}}, ...], ...]}; each inner
 * list goes through a client of its own, flushed and shut down before the next one starts.
 * The report: the library's name and version as it puts them in every batch's context, each
 * HTTP answer it got (status and the URL that answered, from its own debug log) and, per
 * messageId, whether its Callback said delivered or the error it gave up with.
 */
public final class Send {
  // Longer than the library's three attempts with its 15 s base backoff would take.
  private static final long WAIT_FOR_CALLBACKS_SECONDS = 240;
  // okhttp's HttpLoggingInterceptor (BASIC), which the library logs through at VERBOSE:
  // "<-- 200 OK http://host/v1/import/ (12ms, 27-byte body)". The URL is the one that
  // answered, so a followed redirect would show its target here.
  private static final Pattern ANSWER = Pattern.compile("^<-- (\\d{3})\\b.*? (https?://\\S+) \\(");

  private Send() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 3) {
      System.err.println("usage: Send COLLECTOR_URL WRITE_KEY SCENARIO.json");
      System.exit(2);
    }
    Gson gson = new GsonBuilder().setObjectToNumberStrategy(ToNumberPolicy.LONG_OR_DOUBLE).create();
    @SuppressWarnings("unchecked")
    Map<String, List<List<Map<String, Object>>>> scenario =
        gson.fromJson(Files.readString(Path.of(args[2])), Map.class);

    List<Map<String, Object>> attempts = new CopyOnWriteArrayList<>();
    List<String> delivered = new CopyOnWriteArrayList<>();
    Map<String, String> failed = new ConcurrentHashMap<>();
    for (List<Map<String, Object>> calls : scenario.get("batches")) {
      CountDownLatch called = new CountDownLatch(calls.size());
      Analytics analytics =
          Analytics.builder(args[1])
              .endpoint(args[0])
              .log(answersTo(attempts))
              .callback(
                  new Callback() {
                    @Override
                    public void success(Message message) {
                      delivered.add(message.messageId());
                      called.countDown();
                    }

                    @Override
                    public void failure(Message message, Throwable error) {
                      failed.put(message.messageId(), String.valueOf(error.getMessage()));
                      called.countDown();
                    }
                  })
              .build();
      for (Map<String, Object> call : calls) {
        analytics.enqueue(message((String) call.get("call"), params(call)));
      }
      analytics.flush();
      // shutdown() waits for the looper, not for uploads in flight: wait for every callback.
      called.await(WAIT_FOR_CALLBACKS_SECONDS, TimeUnit.SECONDS);
      analytics.shutdown();
    }

    Map<String, Object> report = new LinkedHashMap<>();
    report.put("library", libraryContext().get("library"));
    report.put("attempts", new ArrayList<>(attempts));
    report.put("delivered", new ArrayList<>(delivered));
    report.put("failed", new LinkedHashMap<>(failed));
    System.out.println(new Gson().toJson(report));
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> params(Map<String, Object> call) {
    return (Map<String, Object>) call.get("params");
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> map(Map<String, Object> params, String name) {
    Object value = params.get(name);
    return value == null ? Map.of() : (Map<String, Object>) value;
  }

  private static MessageBuilder<?, ?> message(String call, Map<String, Object> p) {
    MessageBuilder<?, ?> builder;
    switch (call) {
      case "track":
        builder = TrackMessage.builder((String) p.get("event")).properties(map(p, "properties"));
        break;
      case "page":
        PageMessage.Builder page =
            PageMessage.builder((String) p.get("name")).properties(map(p, "properties"));
        if (p.get("category") != null) {
          page.category((String) p.get("category"));
        }
        builder = page;
        break;
      case "screen":
        builder = ScreenMessage.builder((String) p.get("name")).properties(map(p, "properties"));
        break;
      case "identify":
        builder = IdentifyMessage.builder().traits(map(p, "traits"));
        break;
      case "alias":
        builder = AliasMessage.builder((String) p.get("previousId"));
        break;
      case "group":
        builder = GroupMessage.builder((String) p.get("groupId")).traits(map(p, "traits"));
        break;
      default:
        throw new IllegalArgumentException("unknown call " + call);
    }
    builder.userId((String) p.get("userId")).messageId((String) p.get("messageId"));
    if (p.get("timestamp") != null) {
      builder.timestamp(Date.from(Instant.parse((String) p.get("timestamp"))));
    }
    return builder;
  }

  /** The library's debug log, kept only for the HTTP answers it records. */
  private static Log answersTo(List<Map<String, Object>> attempts) {
    return new Log() {
      @Override
      public void print(Level level, String format, Object... args) {
        Matcher answer = ANSWER.matcher(String.format(format, args));
        if (answer.find()) {
          Map<String, Object> attempt = new LinkedHashMap<>();
          attempt.put("url", answer.group(2));
          attempt.put("status", Integer.parseInt(answer.group(1)));
          attempts.add(attempt);
        }
      }

      @Override
      public void print(Level level, Throwable error, String format, Object... args) {
        print(level, format, args);
      }
    };
  }

  /** The context the library adds to every batch (its name and version), read from the jar. */
  @SuppressWarnings("unchecked")
  private static Map<String, Object> libraryContext() throws ReflectiveOperationException {
    Field context =
        Class.forName("com.segment.analytics.internal.AnalyticsClient").getDeclaredField("CONTEXT");
    context.setAccessible(true);
    return (Map<String, Object>) context.get(null);
  }
}
