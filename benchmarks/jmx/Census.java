// The broker's request and record counters, read over JMX (benchmarks/census.py).
//
//   java Census.java PORT
//
// Connects to the JMX agent on 127.0.0.1:PORT (no authentication, no TLS: a benchmark's
// own broker), then prints one snapshot for every line read from standard input, until
// standard input ends. One JVM for every snapshot of a run: a snapshot takes
// milliseconds, not a JVM's start-up. Each snapshot is:
//
//   request NAME VERSION COUNT   one per RequestsPerSec MBean (a request type and version)
//   records TOPIC COUNT          one per topic's MessagesInPerSec MBean
//   records-all COUNT            the MessagesInPerSec MBean without a topic (all topics)
//   end
//
// Counts are the meters' totals since the broker started.
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;
import java.io.BufferedReader;
import java.io.InputStreamReader;

public class Census {
    public static void main(String[] args) {
        try {
            var url = new JMXServiceURL("service:jmx:rmi:///jndi/rmi://127.0.0.1:" + args[0] + "/jmxrmi");
            try (var connector = JMXConnectorFactory.connect(url)) {
                var connection = connector.getMBeanServerConnection();
                var input = new BufferedReader(new InputStreamReader(System.in));
                while (input.readLine() != null) {
                    snapshot(connection);
                }
            }
        } catch (Exception error) {
            // One line on standard error: the reason the benchmark prints.
            Throwable cause = error;
            while (cause.getCause() != null) {
                cause = cause.getCause();
            }
            System.err.println("JMX on 127.0.0.1:" + (args.length > 0 ? args[0] : "?") + ": " + cause);
            System.exit(2);
        }
    }

    static void snapshot(MBeanServerConnection connection) throws Exception {
        var out = new StringBuilder();
        var requests = new ObjectName("kafka.network:type=RequestMetrics,name=RequestsPerSec,*");
        for (ObjectName name : connection.queryNames(requests, null)) {
            String version = name.getKeyProperty("version");
            out.append("request ").append(name.getKeyProperty("request")).append(' ')
                .append(version == null ? "-" : version).append(' ')
                .append(connection.getAttribute(name, "Count")).append('\n');
        }
        var records = new ObjectName("kafka.server:type=BrokerTopicMetrics,name=MessagesInPerSec,*");
        for (ObjectName name : connection.queryNames(records, null)) {
            String topic = name.getKeyProperty("topic");
            if (topic == null) {
                out.append("records-all ");
            } else {
                out.append("records ").append(topic).append(' ');
            }
            out.append(connection.getAttribute(name, "Count")).append('\n');
        }
        out.append("end\n");
        System.out.print(out);
        System.out.flush();
    }
}
